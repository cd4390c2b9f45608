//! Node agent flags shared by `skiff up` and `skiff node` (kubelet's names).

/// How fast the node agent writes Events.
#[derive(clap::Args, Clone, Copy)]
pub struct EventArgs {
    /// Event writes per second after the burst; 0 for no limit (kubelet's --event-qps).
    #[arg(long, default_value_t = 50.0, value_name = "QPS")]
    event_qps: f64,
    /// Event writes allowed at once (kubelet's --event-burst).
    #[arg(long, default_value_t = 100, value_name = "N")]
    event_burst: u32,
}

impl EventArgs {
    /// Copies the flags into a node configuration.
    pub fn apply(self, config: &mut skiff_node::NodeConfig) {
        config.event_qps = self.event_qps;
        config.event_burst = self.event_burst;
    }
}
