//! The Kubernetes client the `kubernetes.*` actions and the `kubernetes_events` source share.
//! Behind the `kubernetes` feature; without it, a config that needs a cluster is refused at start.

use homeostat_core::action::{KubeAction, KubeKind};
use homeostat_core::config::{Config, Source, Step};

use super::{Context, Outcome};

/// A connected cluster, or none when the config needs none.
#[derive(Clone, Default)]
pub struct Cluster {
    #[cfg(feature = "kubernetes")]
    client: Option<kube::Client>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_connected() {
            "Cluster(connected)"
        } else {
            "Cluster(none)"
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the config uses Kubernetes ({why}), but this build has no Kubernetes client; build with `--features kubernetes`")]
    NotBuilt { why: String },
    #[error("{message}")]
    Connect { message: String },
}

/// Why a config needs a cluster: a `kubernetes:` section, a `kubernetes_events` source, or a step
/// with a `kubernetes.*` action (in the rules, then the runbooks; every kind of step, nested or
/// not, counts).
pub fn needed(config: &Config) -> Option<String> {
    if config.kubernetes.is_some() {
        return Some("`kubernetes:`".into());
    }
    if let Some(source) = config
        .sources
        .iter()
        .find(|source| matches!(source, Source::KubernetesEvents(_)))
    {
        return Some(format!("source `{}`", source.name()));
    }
    let rules = config.rules.iter().map(|rule| rule.steps.as_slice());
    let runbooks = config
        .runbooks
        .iter()
        .map(|runbook| runbook.steps.as_slice());
    rules
        .chain(runbooks)
        .find_map(kubernetes_action)
        .map(|action| format!("action `{action}`"))
}

/// The first Kubernetes action among these steps: a step's own, then its branches', its
/// rollback's and its `for_each` steps'.
fn kubernetes_action(steps: &[Step]) -> Option<&str> {
    steps.iter().find_map(|step| {
        step.action
            .as_deref()
            .filter(|action| KubeKind::from_name(action).is_some())
            .or_else(|| {
                step.parallel
                    .iter()
                    .flatten()
                    .find_map(|branch| kubernetes_action(&branch.steps))
            })
            .or_else(|| {
                step.rollback
                    .as_deref()
                    .and_then(|rollback| kubernetes_action(std::slice::from_ref(rollback)))
            })
            .or_else(|| step.steps.as_deref().and_then(kubernetes_action))
    })
}

impl Cluster {
    /// Connects when the config needs a cluster: the `kubernetes:` settings, else the pod's
    /// service account, else `~/.kube/config`.
    pub async fn connect(config: &Config) -> Result<Cluster, Error> {
        let Some(why) = needed(config) else {
            return Ok(Cluster::default());
        };
        Self::connect_for(config, why).await
    }

    #[cfg(feature = "kubernetes")]
    async fn connect_for(config: &Config, why: String) -> Result<Cluster, Error> {
        let settings = config.kubernetes.clone().unwrap_or_default();
        let client_settings = homeostat_kubernetes::client::ClientSettings {
            url: settings.url,
            kubeconfig: settings.kubeconfig.map(std::path::PathBuf::from),
            context: settings.context,
            namespace: settings.namespace,
        };
        let client = homeostat_kubernetes::client::connect(&client_settings)
            .await
            .map_err(|error| Error::Connect {
                message: format!("kubernetes ({why}): {error}"),
            })?;
        Ok(Cluster {
            client: Some(client),
        })
    }

    #[cfg(not(feature = "kubernetes"))]
    async fn connect_for(_config: &Config, why: String) -> Result<Cluster, Error> {
        Err(Error::NotBuilt { why })
    }

    pub fn is_connected(&self) -> bool {
        #[cfg(feature = "kubernetes")]
        {
            self.client.is_some()
        }
        #[cfg(not(feature = "kubernetes"))]
        {
            false
        }
    }

    #[cfg(feature = "kubernetes")]
    pub fn client(&self) -> Option<&kube::Client> {
        self.client.as_ref()
    }

    /// Runs a `kubernetes.*` action; with `context.dry_run`, as a server-side dry run.
    pub async fn execute(&self, action: &KubeAction, context: &Context) -> Outcome {
        #[cfg(feature = "kubernetes")]
        {
            let Some(client) = &self.client else {
                return Outcome::failed(
                    serde_json::json!({}),
                    format!(
                        "`{}` needs a Kubernetes cluster and none is connected; add `kubernetes:` to the config",
                        action.name()
                    ),
                );
            };
            let kube_context = homeostat_kubernetes::actions::Context {
                dry_run: context.dry_run,
                timeout: context.timeout,
                now: context.now,
                field_manager: "homeostat".into(),
            };
            match homeostat_kubernetes::actions::execute(client, action, &kube_context).await {
                Ok(output) => Outcome::succeeded(output),
                Err(failure) => Outcome::failed(failure.output, failure.message),
            }
        }
        #[cfg(not(feature = "kubernetes"))]
        {
            let _ = context;
            Outcome::failed(
                serde_json::json!({}),
                format!(
                    "`{}` needs the Kubernetes client, which this build does not have",
                    action.name()
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::needed;

    fn why(yaml: &str) -> Option<String> {
        let files = [(PathBuf::from("homeostat.yaml"), yaml.to_string())];
        let config = homeostat_core::config::parse(&files).expect("the config parses");
        needed(&config)
    }

    /// A runbook whose one step of `kind` holds a `kubernetes.cordon` somewhere inside.
    fn nested(kind: &str) -> String {
        let cordon = "{name: cordon, action: kubernetes.cordon, with: {node: n}}";
        let step = match kind {
            "parallel" => format!("{{name: fan, parallel: [{{name: a, steps: [{cordon}]}}]}}"),
            "for_each" => format!("{{name: each, for_each: '[1]', steps: [{cordon}]}}"),
            "rollback" => {
                format!("{{name: say, action: log, with: {{message: x}}, rollback: {cordon}}}")
            }
            _ => cordon.to_string(),
        };
        format!("runbooks:\n  - name: r\n    steps: [{step}]\n")
    }

    #[test]
    fn a_cluster_is_needed_for_its_section_its_source_or_any_kubernetes_step() {
        assert_eq!(why(""), None);
        assert_eq!(why("kubernetes: {}\n"), Some("`kubernetes:`".into()));
        assert_eq!(
            why("sources:\n  - {type: kubernetes_events, name: cluster}\n"),
            Some("source `cluster`".into())
        );
        for kind in ["action", "parallel", "for_each", "rollback"] {
            assert_eq!(
                why(&nested(kind)),
                Some("action `kubernetes.cordon`".into()),
                "{kind}"
            );
        }
    }

    #[test]
    fn rules_are_looked_at_before_runbooks_and_inputs_are_not_steps() {
        let rule = "rules:\n  - name: scale\n    steps: [{name: up, action: kubernetes.scale, with: {name: web, replicas: 2, max: 3}}]\n";
        assert_eq!(
            why(&format!("{}{rule}", nested("action"))),
            Some("action `kubernetes.scale`".into())
        );
        // An input that mentions an action is not a step: this one posts to an HTTP API.
        let post = "runbooks:\n  - name: r\n    steps: [{name: post, action: http_request, with: {url: 'http://x', json: {action: kubernetes.scale}}}]\n";
        assert_eq!(why(post), None);
    }
}
