//! The node's one wasmtime `Engine` (async, epoch interruption, pooling
//! allocator), its epoch ticker thread, and the `Linker`s built once for it:
//! WASI p1 for core modules, WASI p2 + wasi:http for components.
//! Store state types live in `host.rs`; compilation in `compile.rs`.

use std::time::Duration;

use wasmtime::component::Linker as ComponentLinker;
use wasmtime::{
    Config, Engine, EngineWeak, InstanceAllocationStrategy, Linker, PoolingAllocationConfig,
};

use crate::WasmRuntimeConfig;
use crate::host::{ComponentHost, P1Host};

/// The Engine and Linkers shared by every pod of the node.
pub(crate) struct EngineParts {
    pub engine: Engine,
    pub p1_linker: Linker<P1Host>,
    pub component_linker: ComponentLinker<ComponentHost>,
    /// Whether the pooling allocator is in use (false after a fallback).
    pub pooling: bool,
}

/// Builds the Engine (pooling if possible) and the Linkers, and starts the
/// epoch ticker.
pub(crate) fn build(config: &WasmRuntimeConfig) -> wasmtime::Result<EngineParts> {
    let (engine, pooling) = if config.pooling {
        match Engine::new(&engine_config(config, true)) {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable; falling back to on-demand allocation");
                (Engine::new(&engine_config(config, false))?, false)
            }
        }
    } else {
        (Engine::new(&engine_config(config, false))?, false)
    };

    let mut p1_linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, |host: &mut P1Host| &mut host.wasi)?;

    let mut component_linker = ComponentLinker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)?;

    start_ticker(engine.weak(), config.epoch_tick);
    Ok(EngineParts {
        engine,
        p1_linker,
        component_linker,
        pooling,
    })
}

/// The wasmtime configuration: async, epoch interruption, and (optionally)
/// the pooling allocator sized for `max_instances` concurrent instances.
fn engine_config(config: &WasmRuntimeConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.wasm_component_model(true);
    c.parallel_compilation(true);
    if pooling {
        let n = config.max_instances.max(1);
        let mut p = PoolingAllocationConfig::new();
        // A Rust wasip2 component instantiates a few core instances, one or
        // two memories and a few tables; leave headroom for that.
        p.total_component_instances(n);
        p.total_core_instances(n.saturating_mul(4));
        p.total_memories(n.saturating_mul(2));
        p.total_tables(n.saturating_mul(4));
        p.total_stacks(n);
        p.max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
        // Each pool slot reserves this much address space: sized to the
        // largest memory, not wasmtime's 4 GiB default, so thousands of
        // slots fit in the address space.
        c.memory_reservation(config.max_memory_bytes);
        p.max_memories_per_component(4);
        p.max_core_instances_per_component(16);
        p.max_tables_per_component(16);
        // Keep a few warm slots' pages resident so back-to-back HTTP
        // requests do not fault their memory in from scratch.
        p.linear_memory_keep_resident(64 << 10);
        p.table_keep_resident(16 << 10);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

/// Increments the engine's epoch every `tick` until the engine is dropped.
fn start_ticker(engine: EngineWeak, tick: Duration) {
    let tick = tick.max(Duration::from_micros(100));
    let spawned = std::thread::Builder::new()
        .name("skiff-wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch ticker; guests will not be interrupted");
    }
}

/// A stable name for the engine's compiled-code compatibility, used as the
/// directory of the on-disk compiled-artifact cache.
pub(crate) fn compatibility_key(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    format!("{:016x}", h.finish())
}
