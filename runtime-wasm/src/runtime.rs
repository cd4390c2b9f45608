//! [`WasmRuntime`]'s operations: building the engine and caches, `pull`
//! (resolve an image by kind of reference, then compile or load it), and
//! `run`/`exec` (turn an [`InstanceSpec`] into a running [`Instance`]).

use std::sync::Arc;

use tracing::Instrument;

use crate::compile::{Compiler, Prepared};
use crate::engine::EngineParts;
use crate::host::Template;
use crate::image::{ImageRef, ImageStore};
use crate::instance::Shared;
use crate::limits::Limits;
use crate::stdio::LogPipe;
use crate::{
    Artifact, ArtifactKind, HttpListen, Instance, InstanceSpec, PullOptions, WasmError,
    WasmRuntime, WasmRuntimeConfig,
};

/// Everything a [`WasmRuntime`] shares between its clones.
pub(crate) struct RuntimeInner {
    config: WasmRuntimeConfig,
    parts: Arc<EngineParts>,
    images: ImageStore,
    compiler: Compiler,
}

/// What an [`Artifact`] holds.
pub(crate) struct ArtifactInner {
    pub image: String,
    pub digest: String,
    pub prepared: Arc<Prepared>,
}

impl WasmRuntime {
    /// Builds the Engine (async, epoch interruption, pooling allocator), its
    /// Linkers and the epoch ticker.
    pub fn new(config: WasmRuntimeConfig) -> Result<WasmRuntime, WasmError> {
        std::fs::create_dir_all(&config.cache_dir).map_err(|source| WasmError::Io {
            context: format!("creating {}", config.cache_dir.display()),
            source,
        })?;
        let parts = Arc::new(
            crate::engine::build(&config).map_err(|e| WasmError::Engine(format!("{e:#}")))?,
        );
        tracing::info!(
            pooling = parts.pooling,
            max_instances = config.max_instances,
            "wasm engine ready"
        );
        let images = ImageStore::new(&config.cache_dir);
        let compiler = Compiler::new(parts.clone(), &config.cache_dir);
        Ok(WasmRuntime {
            inner: Arc::new(RuntimeInner {
                config,
                parts,
                images,
                compiler,
            }),
        })
    }

    /// True when `image` names a wasm artifact by its form alone (a path or
    /// `file://`/`https://` URL ending in `.wasm` or `.wat`); OCI references
    /// are only known after `pull`.
    pub fn looks_like_wasm(image: &str) -> bool {
        let base = image.split(['?', '#']).next().unwrap_or(image);
        crate::image::has_wasm_extension(base)
    }

    /// Whether the pooling allocator is in use (false after a fallback).
    pub fn pooling(&self) -> bool {
        self.inner.parts.pooling
    }

    /// Resolves `image`, fetches it per `options`, compiles it (or loads the
    /// cached compilation) and returns the artifact.
    pub async fn pull(&self, image: &str, options: &PullOptions) -> Result<Artifact, WasmError> {
        let inner = &self.inner;
        let resolved = match crate::image::parse(image, options.base_dir.as_deref())? {
            ImageRef::Local(path) => inner.images.resolve_local(image, &path)?,
            ImageRef::Url(url) => inner.images.resolve_url(image, &url, options).await?,
            ImageRef::Oci(reference) => {
                crate::oci::resolve(
                    &inner.images,
                    &reference,
                    options,
                    &inner.config.insecure_registries,
                )
                .await?
            }
        };
        let digest = resolved.digest.clone();
        let prepared = inner.compiler.prepare(image, resolved).await?;
        Ok(Artifact {
            inner: Arc::new(ArtifactInner {
                image: image.to_string(),
                digest,
                prepared,
            }),
        })
    }

    /// Starts a container. Command artifacts run at once; an HTTP handler
    /// binds `spec.listen` and instantiates per request.
    pub async fn run(
        &self,
        artifact: &Artifact,
        spec: InstanceSpec,
    ) -> Result<Instance, WasmError> {
        let span =
            tracing::info_span!("wasm", container = %spec.name, image = %artifact.inner.image);
        self.start(artifact, spec).instrument(span).await
    }

    /// Runs a command artifact (p1 or p2) with `spec` (the pod's env and
    /// preopens, the exec's args and streams); same as `run` for commands.
    pub async fn exec(
        &self,
        artifact: &Artifact,
        spec: InstanceSpec,
    ) -> Result<Instance, WasmError> {
        if artifact.kind() == ArtifactKind::HttpHandler {
            return Err(WasmError::InvalidSpec(
                "exec needs a command module, not an HTTP handler".into(),
            ));
        }
        self.run(artifact, spec).await
    }

    async fn start(&self, artifact: &Artifact, spec: InstanceSpec) -> Result<Instance, WasmError> {
        let prepared = artifact.inner.prepared.clone();
        let limits = Limits::new(spec.memory_limit_bytes, spec.cpu_limit_millicores);
        let (stdout, out_task) = LogPipe::new(spec.stdout);
        let (stderr, err_task) = LogPipe::new(spec.stderr);
        let writers = out_task.into_iter().chain(err_task).collect();
        let template = Template {
            args: spec.args,
            env: spec.env,
            preopens: spec.preopens,
            stdout,
            stderr,
            allow_network: spec.allow_outbound_network,
            limits: limits.clone(),
        };
        // Fail fast (ContainerCannotRun-style) on a bad preopen.
        template
            .wasi_builder()
            .map_err(|e| WasmError::InvalidSpec(format!("{e:#}")))?;
        let mut shared = Shared::new(spec.name.clone(), limits);
        let engine = self.inner.parts.engine.clone();

        if let Prepared::Http(pre) = &*prepared {
            let listener = bind(spec.listen).await?;
            shared.local_addr = listener.local_addr().ok();
            let server = crate::http::HttpServer::new(
                engine,
                pre.clone(),
                template,
                shared.stop.clone(),
                spec.name,
            );
            shared.http = Some(Arc::downgrade(&server));
            let shared = Arc::new(shared);
            crate::http::start(shared.clone(), server, listener, writers);
            tracing::info!(addr = ?shared.local_addr, "wasi:http handler serving");
            return Ok(Instance { inner: shared });
        }
        if spec.listen.is_some() {
            tracing::debug!("listen ignored: the artifact is a command, not an HTTP handler");
        }
        let shared = Arc::new(shared);
        crate::command::start(
            engine,
            shared.clone(),
            prepared,
            template,
            spec.stdin,
            writers,
        );
        Ok(Instance { inner: shared })
    }
}

/// Binds (or adopts) the HTTP handler's listener.
async fn bind(listen: Option<HttpListen>) -> Result<tokio::net::TcpListener, WasmError> {
    match listen {
        None => Err(WasmError::InvalidSpec(
            "an HTTP handler needs `listen`".into(),
        )),
        Some(HttpListen::Addr(addr)) => {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| WasmError::Listen {
                    addr: addr.to_string(),
                    source,
                })
        }
        Some(HttpListen::Listener(l)) => {
            let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            l.set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
                .map_err(|source| WasmError::Listen { addr, source })
        }
    }
}

impl Artifact {
    /// What kind of workload this is.
    pub fn kind(&self) -> ArtifactKind {
        self.inner.prepared.kind()
    }

    /// Content digest of the wasm bytes, `sha256:<hex>`.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// The image reference it was pulled as.
    pub fn image(&self) -> &str {
        &self.inner.image
    }
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("image", &self.inner.image)
            .field("digest", &self.inner.digest)
            .field("kind", &self.kind())
            .finish()
    }
}
