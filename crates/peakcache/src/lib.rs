pub mod freshness; pub use freshness::Freshness;
