//! Connecting to the Kubernetes API: an explicit URL (`kubectl proxy`, tests), a kubeconfig file
//! and context, or kube's inference (the `KUBECONFIG`/`~/.kube/config` file, else the pod's
//! service account when running in a cluster).
//!
//! Credentials never reach a log line: only the cluster URL and where the config came from do.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::{Deserialize, Serialize};

/// How to reach the API server; the engine fills it from its configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    /// An explicit API URL, such as `http://127.0.0.1:8001` behind `kubectl proxy`; no
    /// credentials are sent.
    pub url: Option<String>,
    /// A kubeconfig file to read instead of `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current one.
    pub context: Option<String>,
    /// The namespace requests default to, instead of the context's or the pod's.
    pub namespace: Option<String>,
}

/// Where the connection's settings come from, as [`ClientSettings::auth`] chooses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `url`: that URL, without credentials.
    Url(String),
    /// `kubeconfig` or `context`: that file (or the default one) and context (or its current one).
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
    },
    /// Nothing set: kube's inference, the default kubeconfig and else the in-cluster service
    /// account.
    Infer,
}

impl ClientSettings {
    pub fn auth(&self) -> Auth {
        if let Some(url) = &self.url {
            Auth::Url(url.clone())
        } else if self.kubeconfig.is_some() || self.context.is_some() {
            Auth::Kubeconfig {
                path: self.kubeconfig.clone(),
                context: self.context.clone(),
            }
        } else {
            Auth::Infer
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid kubernetes API URL `{url}`: {reason}; set `kubernetes.url` to one like `http://127.0.0.1:8001`")]
    Url { url: String, reason: String },
    #[error("cannot read kubeconfig `{path}`: {source}; fix `kubernetes.kubeconfig` or unset it to use `~/.kube/config`")]
    ReadKubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig `{path}` has no context `{context}` (it has {available}); fix `kubernetes.context`")]
    NoContext {
        path: String,
        context: String,
        available: String,
    },
    #[error("cannot use kubeconfig `{path}`: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("{found} `{path}` and not in a cluster ({source}); set `kubernetes.kubeconfig` or run inside a pod with a service account")]
    Infer {
        /// "no kubeconfig at", or "cannot use the kubeconfig at" when there is one.
        found: &'static str,
        path: String,
        #[source]
        source: kube::config::InferConfigError,
    },
    #[error("cannot make a kubernetes client for `{url}`: {source}")]
    Client {
        url: String,
        #[source]
        source: kube::Error,
    },
}

/// Where kube looks for a kubeconfig when none is given.
fn default_kubeconfig() -> String {
    std::env::var("KUBECONFIG")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "~/.kube/config".into())
}

/// Parses into whatever the caller needs (`http::Uri` for `Config::new`, which this crate does
/// not otherwise depend on).
fn parse<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|error: T::Err| error.to_string())
}

fn default_kubeconfig_exists() -> bool {
    match std::env::var_os("KUBECONFIG").filter(|path| !path.is_empty()) {
        // A list of files, as kubectl takes it.
        Some(paths) => std::env::split_paths(&paths).any(|path| path.exists()),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".kube/config").exists())
            .unwrap_or(false),
    }
}

/// The kube config the settings describe.
pub async fn config(settings: &ClientSettings) -> Result<Config, Error> {
    let mut config = match settings.auth() {
        Auth::Url(url) => {
            let invalid = |reason: String| Error::Url {
                url: url.clone(),
                reason,
            };
            let config = Config::new(parse(&url).map_err(invalid)?);
            // `host:port` parses as a URI too, but kube needs to know whether to speak TLS.
            if !matches!(config.cluster_url.scheme_str(), Some("http" | "https"))
                || config.cluster_url.host().is_none()
            {
                return Err(invalid(
                    "it needs `http://` or `https://` and a host".into(),
                ));
            }
            config
        }
        Auth::Kubeconfig { path, context } => {
            let options = KubeConfigOptions {
                context: context.clone(),
                ..KubeConfigOptions::default()
            };
            let shown = path
                .as_ref()
                .map(|path| path.display().to_string())
                .unwrap_or_else(default_kubeconfig);
            let kubeconfig = match &path {
                Some(path) => {
                    Kubeconfig::read_from(path).map_err(|source| Error::ReadKubeconfig {
                        path: path.clone(),
                        source,
                    })?
                }
                None => Kubeconfig::read().map_err(|source| Error::ReadKubeconfig {
                    path: shown.clone().into(),
                    source,
                })?,
            };
            if let Some(context) = &context {
                if !kubeconfig
                    .contexts
                    .iter()
                    .any(|named| &named.name == context)
                {
                    let available = kubeconfig
                        .contexts
                        .iter()
                        .map(|named| format!("`{}`", named.name))
                        .collect::<Vec<_>>();
                    return Err(Error::NoContext {
                        path: shown,
                        context: context.clone(),
                        available: if available.is_empty() {
                            "none".into()
                        } else {
                            available.join(", ")
                        },
                    });
                }
            }
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: shown,
                    source,
                })?
        }
        Auth::Infer => Config::infer().await.map_err(|source| Error::Infer {
            found: if default_kubeconfig_exists() {
                "cannot use the kubeconfig at"
            } else {
                "no kubeconfig at"
            },
            path: default_kubeconfig(),
            source,
        })?,
    };
    if let Some(namespace) = &settings.namespace {
        config.default_namespace = namespace.clone();
    }
    Ok(config)
}

/// A client for the API server the settings describe.
pub async fn connect(settings: &ClientSettings) -> Result<Client, Error> {
    let mut config = config(settings).await?;
    // kube retries 429, 503 and 504 by itself, up to 15 times over minutes, which would hide a
    // PodDisruptionBudget's refusal from drain's own loop and stretch a step past its timeout.
    // The watches back off on their own, and a step that should retry says so (`retries:`).
    config.default_retry = false;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|source| Error::Client {
        url: url.clone(),
        source,
    })?;
    tracing::info!(url = %url, via = ?via(settings), "connected to kubernetes");
    Ok(client)
}

/// Where the settings came from, for the log: never the credentials themselves.
fn via(settings: &ClientSettings) -> &'static str {
    match settings.auth() {
        Auth::Url(_) => "url",
        Auth::Kubeconfig { .. } => "kubeconfig",
        Auth::Infer => "inferred",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn explicit_url_wins_and_the_namespace_overrides() {
        let settings = ClientSettings {
            url: Some("http://127.0.0.1:8001".into()),
            kubeconfig: Some("/nowhere".into()),
            namespace: Some("shop".into()),
            ..ClientSettings::default()
        };
        let config = config(&settings).await.expect("config");
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:8001/");
        assert_eq!(config.default_namespace, "shop");
        connect(&settings).await.expect("client");
    }

    #[tokio::test]
    async fn errors_say_what_to_fix() {
        let bad = ClientSettings {
            url: Some("http://[::1".into()),
            ..ClientSettings::default()
        };
        let error = config(&bad).await.expect_err("bad url").to_string();
        assert!(
            error.contains("`http://[::1`") && error.contains("kubernetes.url"),
            "{error}"
        );

        let missing = ClientSettings {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..ClientSettings::default()
        };
        let error = config(&missing).await.expect_err("missing").to_string();
        assert!(error.contains("`/nonexistent/kubeconfig`"), "{error}");

        let dir = std::env::temp_dir().join(format!("homeostat-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://10.0.0.1:6443'}\nusers:\n- name: u\n  user: {token: secret-token}\ncontexts:\n- name: prod\n  context: {cluster: c, user: u, namespace: shop}\ncurrent-context: prod\n",
        )
        .expect("write");
        let wrong = ClientSettings {
            kubeconfig: Some(path.clone()),
            context: Some("staging".into()),
            ..ClientSettings::default()
        };
        let error = config(&wrong).await.expect_err("no context").to_string();
        assert!(
            error.contains("`staging`") && error.contains("`prod`"),
            "{error}"
        );
        let right = ClientSettings {
            kubeconfig: Some(path),
            context: Some("prod".into()),
            ..ClientSettings::default()
        };
        let config = config(&right).await.expect("config");
        assert_eq!(config.default_namespace, "shop");
        assert_eq!(config.cluster_url.to_string(), "https://10.0.0.1:6443/");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A kubeconfig with a token user and a context, pointed at the in-process API server: the
    /// client it makes lists through it, in the context's namespace.
    #[tokio::test]
    async fn a_kubeconfig_context_connects_and_lists() {
        let fake = homeostat_kube_fake::FakeApi::start().await;
        fake.put_json(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"}}));
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{}'}}\nusers:\n- name: u\n  user: {{token: secret-token}}\ncontexts:\n- name: kind-homeostat\n  context: {{cluster: c, user: u, namespace: shop}}\ncurrent-context: other\n",
                fake.url()
            ),
        )
        .expect("write the kubeconfig");
        let client = connect(&ClientSettings {
            kubeconfig: Some(path),
            context: Some("kind-homeostat".into()),
            ..ClientSettings::default()
        })
        .await
        .expect("a client");
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::default_namespaced(client);
        let names: Vec<String> = api
            .list(&Default::default())
            .await
            .expect("a list through the kubeconfig's cluster")
            .items
            .into_iter()
            .filter_map(|map| map.metadata.name)
            .collect();
        assert_eq!(names, ["settings"]);
        let requests = fake.requests();
        assert_eq!(
            requests.last().map(|r| r.path.as_str()),
            Some("/api/v1/namespaces/shop/configmaps")
        );
    }
}
