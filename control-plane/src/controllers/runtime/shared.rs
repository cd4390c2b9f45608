//! Informers shared by the components of one process, as client-go's
//! SharedInformerFactory shares them within one binary. `skiff up` and
//! `skiff server` run the scheduler next to the controller manager, and
//! both watch pods, nodes, namespaces, PersistentVolumes and their claims,
//! StorageClasses and PodDisruptionBudgets: with one informer per kind, a
//! pod write is sent, decoded and cached once for both instead of once per
//! component. An informer starts on first use and runs until the process
//! shuts down, across leadership terms: a component that leads again
//! subscribes to a warm cache (its feed begins with a Resync, `feed.rs`).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::informer::{Informer, watch_config};

/// The informers of one process, one per kind, each watching every
/// namespace with [`watch_config`].
pub struct SharedInformers {
    client: Client,
    shutdown: CancellationToken,
    started: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl SharedInformers {
    /// Informers of `client`'s cluster that stop at `shutdown`.
    pub fn new(client: Client, shutdown: CancellationToken) -> Arc<SharedInformers> {
        Arc::new(SharedInformers {
            client,
            shutdown,
            started: Mutex::new(HashMap::new()),
        })
    }

    /// The informer of every `K` in the cluster, started on first use.
    pub fn all<K>(&self) -> Informer<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default,
    {
        // A map of started informers: a panicking holder leaves none half made.
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        let kind = TypeId::of::<K>();
        if let Some(informer) = started
            .get(&kind)
            .and_then(|any| any.downcast_ref::<Informer<K>>())
        {
            return informer.clone();
        }
        let informer = Informer::spawn(
            Api::all(self.client.clone()),
            watch_config(),
            self.shutdown.clone(),
        );
        started.insert(kind, Box::new(informer.clone()));
        informer
    }
}
