//! Compiling resolved images into ready-to-instantiate artifacts, once:
//! an in-memory map digest → pre-instantiated `InstancePre`/`CommandPre`/
//! `ProxyPre`, backed by an on-disk cache of serialized compiled code keyed
//! by content sha256 under a directory named for the engine's compatibility
//! hash, so a second pod or a restarted node starts without compiling.
//! Fetching is in `image.rs`; running in `command.rs` and `http.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Module, Precompiled};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::ArtifactKind;
use crate::WasmError;
use crate::engine::{EngineParts, compatibility_key};
use crate::host::{ComponentHost, P1Host};
use crate::image::{Resolved, digest_hex, write_atomic};

/// A compiled image, linked and pre-instantiated.
pub(crate) enum Prepared {
    P1(InstancePre<P1Host>),
    Command(CommandPre<ComponentHost>),
    Http(ProxyPre<ComponentHost>),
}

impl Prepared {
    pub(crate) fn kind(&self) -> ArtifactKind {
        match self {
            Prepared::P1(_) => ArtifactKind::P1Module,
            Prepared::Command(_) => ArtifactKind::P2Command,
            Prepared::Http(_) => ArtifactKind::HttpHandler,
        }
    }
}

type Cell = Arc<OnceCell<Arc<Prepared>>>;

/// Compiles images and caches the results in memory and on disk.
pub(crate) struct Compiler {
    parts: Arc<EngineParts>,
    compiled_dir: PathBuf,
    memory: Mutex<HashMap<String, Cell>>,
}

impl Compiler {
    pub(crate) fn new(parts: Arc<EngineParts>, cache_dir: &std::path::Path) -> Compiler {
        let compiled_dir = cache_dir
            .join("compiled")
            .join(compatibility_key(&parts.engine));
        Compiler {
            parts,
            compiled_dir,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The prepared artifact for `resolved`, compiling it at most once.
    pub(crate) async fn prepare(
        &self,
        image: &str,
        resolved: Resolved,
    ) -> Result<Arc<Prepared>, WasmError> {
        let cell: Cell = {
            let mut map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(resolved.digest.clone()).or_default().clone()
        };
        let prepared = cell
            .get_or_try_init(|| async {
                let parts = self.parts.clone();
                let path = digest_hex(&resolved.digest)
                    .map(|hex| self.compiled_dir.join(format!("{hex}.cwasm")));
                let image = image.to_string();
                tokio::task::spawn_blocking(move || {
                    load_or_compile(&parts, &image, &resolved, path)
                })
                .await
                .map_err(|e| WasmError::Engine(format!("compile task failed: {e}")))?
                .map(Arc::new)
            })
            .await?;
        Ok(prepared.clone())
    }
}

/// Loads the cached compilation at `path`, or compiles and stores it; then
/// links and pre-instantiates.
fn load_or_compile(
    parts: &EngineParts,
    image: &str,
    resolved: &Resolved,
    path: Option<PathBuf>,
) -> Result<Prepared, WasmError> {
    let compile_err = |reason: String| WasmError::Compile {
        image: image.to_string(),
        reason,
    };
    if let Some(path) = &path
        && path.exists()
    {
        match load_cached(&parts.engine, path) {
            Ok(Some(code)) => {
                tracing::debug!(image, digest = %resolved.digest, "loaded compiled artifact from cache");
                return link(parts, code).map_err(compile_err);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(image, error = %e, "unusable cached compilation; compiling again")
            }
        }
    }

    let bytes = resolved.bytes(image)?;
    let binary = if resolved.text || !bytes.starts_with(b"\0asm") {
        wat::parse_bytes(&bytes)
            .map_err(|e| compile_err(format!("not wasm binary or text: {e}")))?
            .into_owned()
    } else {
        bytes
    };
    let started = std::time::Instant::now();
    let (code, serialized) = if is_component(&binary) {
        let c =
            Component::new(&parts.engine, &binary).map_err(|e| compile_err(format!("{e:#}")))?;
        let s = c.serialize();
        (Code::Component(c), s)
    } else if is_core_module(&binary) {
        let m = Module::new(&parts.engine, &binary).map_err(|e| compile_err(format!("{e:#}")))?;
        let s = m.serialize();
        (Code::Module(m), s)
    } else {
        return Err(compile_err("neither a core module nor a component".into()));
    };
    tracing::info!(image, digest = %resolved.digest, elapsed_ms = started.elapsed().as_millis() as u64, "compiled wasm artifact");
    match (serialized, &path) {
        (Ok(s), Some(path)) => {
            if let Err(e) = write_atomic(path, &s) {
                tracing::warn!(image, error = %e, "cannot store compiled artifact; it will be compiled again next start");
            }
        }
        (Err(e), _) => tracing::warn!(image, error = %e, "cannot serialize compiled artifact"),
        _ => {}
    }
    link(parts, code).map_err(compile_err)
}

/// A component binary: `\0asm`, version 0x0d, layer 1.
fn is_component(bytes: &[u8]) -> bool {
    bytes.get(..8) == Some(b"\0asm\x0d\0\x01\0")
}

/// A core module binary: `\0asm`, version 1, layer 0.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.get(..8) == Some(b"\0asm\x01\0\0\0")
}

enum Code {
    Module(Module),
    Component(Component),
}

fn load_cached(engine: &Engine, path: &std::path::Path) -> wasmtime::Result<Option<Code>> {
    Ok(match Engine::detect_precompiled_file(path)? {
        // SAFETY: files in the compiled cache are written only by this
        // runtime, from its own `serialize`, under a directory keyed by the
        // engine's compatibility hash; wasmtime re-checks compatibility.
        Some(Precompiled::Module) => Some(Code::Module(unsafe {
            Module::deserialize_file(engine, path)?
        })),
        // SAFETY: as above.
        Some(Precompiled::Component) => Some(Code::Component(unsafe {
            Component::deserialize_file(engine, path)?
        })),
        None => None,
    })
}

/// Links compiled code against the runtime's Linkers and decides its kind.
fn link(parts: &EngineParts, code: Code) -> Result<Prepared, String> {
    match code {
        Code::Module(module) => {
            if module.get_export("_start").is_none() {
                return Err(
                    "core module has no `_start` export (only WASI p1 commands are supported)"
                        .into(),
                );
            }
            let pre = parts
                .p1_linker
                .instantiate_pre(&module)
                .map_err(|e| format!("unsupported imports: {e:#}"))?;
            Ok(Prepared::P1(pre))
        }
        Code::Component(component) => {
            let pre = parts
                .component_linker
                .instantiate_pre(&component)
                .map_err(|e| format!("unsupported imports: {e:#}"))?;
            if let Ok(proxy) = ProxyPre::new(pre.clone()) {
                return Ok(Prepared::Http(proxy));
            }
            CommandPre::new(pre).map(Prepared::Command).map_err(|_| {
                "component exports neither wasi:http/incoming-handler nor wasi:cli/run".into()
            })
        }
    }
}
