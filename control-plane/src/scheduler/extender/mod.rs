//! Scheduler extenders, as kube-scheduler's: HTTP services configured in
//! the scheduler file (`extenders:`) that filter the nodes the in-tree
//! filters found feasible and add their own scores. This file holds the
//! client (`Extender`: which pods it wants, the filter and prioritize
//! calls, one tracing span each) and `ExtenderError`; the wire types are in
//! `wire.rs`, the file form in `config.rs`, and the cycle step that calls
//! extenders between the pure filter and score phases in `cycle.rs`.

mod config;
mod cycle;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use tracing::Instrument;

pub use config::{DEFAULT_HTTP_TIMEOUT, ExtenderConfig, ExtenderTls, ManagedResource};
pub use cycle::{CycleError, schedule_with_extenders};
use wire::{Candidate, ExtenderArgs, ExtenderFilterResult, FilterOutcome, HostPriority};

/// The largest answer read from an extender.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// A failed extender call.
#[derive(Debug, thiserror::Error)]
pub enum ExtenderError {
    /// No complete answer within `httpTimeout`.
    #[error("extender at URL {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The request could not be sent or the answer not read.
    #[error("failed calling extender at URL {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The extender answered with a status other than 200.
    #[error("failed with extender at URL {url}, code {status}")]
    Status { url: String, status: u16 },
    /// The answer was larger than the scheduler reads.
    #[error("extender at URL {url} answered with more than {MAX_ANSWER_BYTES} bytes")]
    TooLarge { url: String },
    /// The pod or nodes could not be encoded.
    #[error("cannot encode the request to extender at URL {url}: {source}")]
    Encode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// The answer was not the JSON the protocol expects.
    #[error("extender at URL {url} sent an answer that is not valid JSON for the call: {source}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// The answer was well-formed but broke the protocol (or reported an error).
    #[error("extender at URL {url}: {source}")]
    Protocol {
        url: String,
        #[source]
        source: wire::ProtocolError,
    },
}

/// The configuration file describes an extender that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("extender {url}: {reason}")]
pub struct InvalidExtender {
    pub url: String,
    pub reason: String,
}

/// A configured extender, ready to call.
#[derive(Clone, Debug)]
pub struct Extender {
    config: Arc<ExtenderConfig>,
    client: reqwest::Client,
}

impl Extender {
    /// Checks the configuration and builds its HTTP client.
    pub fn new(config: &ExtenderConfig) -> Result<Self, InvalidExtender> {
        let invalid = |reason: String| InvalidExtender {
            url: config.url_prefix.clone(),
            reason,
        };
        config.validate().map_err(invalid)?;
        let mut roots = rustls::RootCertStore::empty();
        for pem in ca_pems(config).map_err(invalid)? {
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| invalid(format!("tlsConfig CA: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("tlsConfig CA: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .timeout(config.timeout())
            .tcp_nodelay(true)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            config: Arc::new(config.clone()),
            client,
        })
    }

    /// The extender's urlPrefix, which names it in logs.
    pub fn name(&self) -> &str {
        &self.config.url_prefix
    }

    /// Whether an error from this extender is skipped rather than failing the pod.
    pub fn is_ignorable(&self) -> bool {
        self.config.ignorable
    }

    /// Whether the extender filters.
    pub fn filters(&self) -> bool {
        config::verb(&self.config.filter_verb).is_some()
    }

    /// Whether the extender scores.
    pub fn prioritizes(&self) -> bool {
        config::verb(&self.config.prioritize_verb).is_some()
    }

    /// The weight of the extender's scores.
    pub fn weight(&self) -> i64 {
        self.config.weight
    }

    /// Whether the pod is the extender's business: every pod when it
    /// manages no resources, otherwise pods whose containers request or
    /// limit one of them.
    pub fn is_interested(&self, pod: &Pod) -> bool {
        let managed = &self.config.managed_resources;
        if managed.is_empty() {
            return true;
        }
        let Some(spec) = &pod.spec else {
            return false;
        };
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.resources.as_ref())
            .flat_map(|r| r.requests.iter().chain(r.limits.iter()))
            .flat_map(|m| m.keys())
            .any(|k| managed.iter().any(|r| r.name == *k))
    }

    /// Asks which of `candidates` may take the pod.
    pub async fn filter(
        &self,
        pod: &Pod,
        candidates: &[Candidate<'_>],
    ) -> Result<FilterOutcome, ExtenderError> {
        let Some(verb) = config::verb(&self.config.filter_verb) else {
            return Ok(FilterOutcome {
                passed: candidates.iter().map(|c| c.name.to_string()).collect(),
                ..Default::default()
            });
        };
        let cache = self.config.node_cache_capable;
        let answer: ExtenderFilterResult = self.call(verb, pod, candidates).await?;
        answer
            .outcome(candidates, cache)
            .map_err(|source| ExtenderError::Protocol {
                url: self.url(verb),
                source,
            })
    }

    /// Asks for the extender's scores (0..=10) of `candidates`.
    pub async fn prioritize(
        &self,
        pod: &Pod,
        candidates: &[Candidate<'_>],
    ) -> Result<Vec<HostPriority>, ExtenderError> {
        let Some(verb) = config::verb(&self.config.prioritize_verb) else {
            return Ok(Vec::new());
        };
        let list: Option<Vec<HostPriority>> = self.call(verb, pod, candidates).await?;
        Ok(list.unwrap_or_default())
    }

    fn url(&self, verb: &str) -> String {
        format!("{}/{verb}", self.config.url_prefix.trim_end_matches('/'))
    }

    /// POSTs the ExtenderArgs for `candidates` to `urlPrefix/verb` and
    /// decodes the answer, inside a span naming the call.
    async fn call<T: DeserializeOwned>(
        &self,
        verb: &str,
        pod: &Pod,
        candidates: &[Candidate<'_>],
    ) -> Result<T, ExtenderError> {
        let url = self.url(verb);
        let pod_key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let span = tracing::info_span!("extender", %url, pod = %pod_key, nodes = candidates.len());
        async {
            let started = Instant::now();
            let args = ExtenderArgs::new(pod, candidates, self.config.node_cache_capable);
            let result = self.post(&url, &args).await;
            match &result {
                Ok(_) => tracing::debug!(elapsed = ?started.elapsed(), "extender answered"),
                Err(e) => tracing::debug!(elapsed = ?started.elapsed(), error = %e, "extender call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        url: &str,
        args: &ExtenderArgs<'_>,
    ) -> Result<T, ExtenderError> {
        let failed = |source: reqwest::Error| {
            if source.is_timeout() {
                ExtenderError::Timeout {
                    url: url.to_string(),
                    timeout: self.config.timeout(),
                }
            } else {
                ExtenderError::Request {
                    url: url.to_string(),
                    source,
                }
            }
        };
        let body = serde_json::to_vec(args).map_err(|source| ExtenderError::Encode {
            url: url.to_string(),
            source,
        })?;
        let mut resp = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(failed)?;
        if resp.status() != http::StatusCode::OK {
            return Err(ExtenderError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let mut answer = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ExtenderError::TooLarge {
                    url: url.to_string(),
                });
            }
            answer.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&answer).map_err(|source| ExtenderError::Decode {
            url: url.to_string(),
            source,
        })
    }
}

/// The PEM bytes of the configured CAs (file and inline).
fn ca_pems(config: &ExtenderConfig) -> Result<Vec<Vec<u8>>, String> {
    let Some(tls) = &config.tls_config else {
        return Ok(Vec::new());
    };
    let mut pems = Vec::new();
    if let Some(path) = &tls.ca_file {
        pems.push(
            std::fs::read(path).map_err(|e| format!("tlsConfig.caFile {}: {e}", path.display()))?,
        );
    }
    if let Some(data) = &tls.ca_data {
        pems.push(
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| format!("tlsConfig.caData is not base64: {e}"))?,
        );
    }
    Ok(pems)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn extender(yaml: &str) -> Extender {
        let cfg: ExtenderConfig = serde_yaml::from_str(yaml).expect("yaml");
        Extender::new(&cfg).expect("extender")
    }

    fn pod_with(resources: serde_json::Value, init: bool) -> Pod {
        let c = json!({"name": "c", "image": "a.wasm", "resources": resources});
        let spec = if init {
            json!({"containers": [{"name": "main", "image": "a.wasm"}], "initContainers": [c]})
        } else {
            json!({"containers": [c]})
        };
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    #[test]
    fn interest_follows_managed_resources() {
        let all = extender("urlPrefix: http://x\nfilterVerb: f\n");
        let foo = extender(
            "urlPrefix: http://x\nfilterVerb: f\nmanagedResources: [{name: example.com/foo}]\n",
        );
        let plain = pod_with(json!({"requests": {"cpu": "1"}}), false);
        assert!(all.is_interested(&plain));
        assert!(!foo.is_interested(&plain));
        assert!(foo.is_interested(&pod_with(
            json!({"requests": {"example.com/foo": "1"}}),
            false
        )));
        assert!(foo.is_interested(&pod_with(json!({"limits": {"example.com/foo": "1"}}), true)));
    }

    #[test]
    fn bad_configuration_is_named() {
        let cfg = ExtenderConfig {
            url_prefix: "http://x".into(),
            filter_verb: Some("filter".into()),
            tls_config: Some(ExtenderTls {
                ca_data: Some("not base64!".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = Extender::new(&cfg).expect_err("bad caData");
        assert!(
            err.to_string()
                .starts_with("extender http://x: tlsConfig.caData"),
            "{err}"
        );
    }
}
