//! Sources that run inside the engine (the HTTP ones are handlers in the API crate).

pub mod detector;
pub mod forecast;
pub mod http_probe;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod slo;
