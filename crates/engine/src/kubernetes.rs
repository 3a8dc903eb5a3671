//! The Kubernetes client the `kubernetes.*` actions and the `kubernetes_events` source share.
//! Behind the `kubernetes` feature; without it, a config that needs a cluster is refused at start.

use homeostat_core::action::KubeAction;
use homeostat_core::config::Config;

use crate::action::{Context, Outcome};

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
/// with a `kubernetes.*` action (found by walking the rules and runbooks as data, so every kind
/// of step, nested or not, counts).
pub fn needed(config: &Config) -> Option<String> {
    if config.kubernetes.is_some() {
        return Some("`kubernetes:`".into());
    }
    if let Some(source) = config
        .sources
        .iter()
        .find(|source| matches!(source, homeostat_core::config::Source::KubernetesEvents(_)))
    {
        return Some(format!("source `{}`", source.name()));
    }
    fn find(value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(action)) = map.get("action") {
                    if homeostat_core::action::KubeKind::from_name(action).is_some() {
                        return Some(format!("action `{action}`"));
                    }
                }
                map.values().find_map(find)
            }
            serde_json::Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    let rules = serde_json::to_value(&config.rules).unwrap_or_default();
    let runbooks = serde_json::to_value(&config.runbooks).unwrap_or_default();
    find(&rules).or_else(|| find(&runbooks))
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
