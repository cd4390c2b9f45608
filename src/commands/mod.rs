//! The long-running commands of the binary (`up`, `server`, `node`) and the
//! store maintenance verbs; each file wires library crates together.

pub mod components;
pub mod control_plane;
pub mod data_dir;
pub mod node;
pub mod node_args;
pub mod request_limit;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod up;
