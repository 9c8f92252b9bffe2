//! consul-template inside Legate: Go's text/template (the `gotmpl` crate) with consul-template's
//! functions, fed by blocking queries to an agent. `legate template` runs it as a command; the
//! agent runs its config's `template` blocks with it.

pub mod config;
pub mod deps;
pub mod exec;
pub mod funcs;
pub mod render;
pub mod runner;

pub use config::{TemplateSpec, Wait};
pub use legate_client::{Client, TlsOptions};
pub use runner::{Event, Options, Runner};
