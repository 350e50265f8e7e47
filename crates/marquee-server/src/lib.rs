#![doc = include_str!("../README.md")]

pub mod capacity;
pub mod cli;
pub mod settings;
pub mod slow_requests;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::Application;
