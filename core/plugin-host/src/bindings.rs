//! Host bindings generated from `sdk/wit`, one module per supported package version (Zed's
//! `since_v0_x` scheme): a plugin built against `legate:plugin@0.1.x` links against `v0_1`.
//! A breaking WIT change adds a module here; old modules stay so old plugins keep loading.

pub mod v0_1 {
    /// The `check` world; its host interfaces are the ones every world shares.
    pub mod check {
        wasmtime::component::bindgen!({
            path: "../../sdk/wit",
            world: "check",
            imports: { default: async },
            exports: { default: async },
        });
    }

    /// The `event-handler` world, reusing the host interfaces of [`check`].
    pub mod handler {
        wasmtime::component::bindgen!({
            path: "../../sdk/wit",
            world: "event-handler",
            imports: { default: async },
            exports: { default: async },
            with: {
                "legate:plugin/types": super::check::legate::plugin::types,
                "legate:plugin/log": super::check::legate::plugin::log,
                "legate:plugin/http": super::check::legate::plugin::http,
                "legate:plugin/net": super::check::legate::plugin::net,
                "legate:plugin/kv": super::check::legate::plugin::kv,
                "legate:plugin/host": super::check::legate::plugin::host,
            },
        });
    }

    pub use check::legate::plugin::{host, http, kv, log, net, types};
}
