//! streamscore: a Kafka stream-scoring engine for tweet sentiment.
//!
//! # Layout
//!
//! - [`text`]: tweet-aware tokenization (and Hugging Face tokenizers as an alternative).
//! - [`features`]: hashing tokens into unigram and bigram feature slots.
//! - [`model`]: the immutable loaded classifier, its file format, and the atomic swap handle.
//! - [`train`]: FTRL logistic regression + Platt calibration, from labeled files to a model.
//! - [`dataset`]: reading labeled JSON-lines files.
//! - [`evaluate`]: accuracy, macro-F1, confusion matrix, speed.
//! - [`input`]: finding the text and id in a record (JSON shapes or plain text).
//! - [`score`]: labeling JSON or plain lines as a stream (the `score` command's engine).
//! - [`config`]: settings from `config/default.toml`, a `--config` file and the environment.
//! - [`stream`]: the data plane behind `run`: consumer pool, micro-batcher, scorer, producer,
//!   at-least-once offset tracking, dead letters.
//! - [`store`]: uploaded models kept on disk as numbered versions per context id.
//! - [`auth`]: access keys, hashed passwords, signed bearer tokens.
//! - [`opinion`]: subjects, windowed opinion summaries, the summary topic.
//! - [`control`]: the deployment registry: lifecycle, persistence, hot swap, control socket.
//! - [`http`]: the HTTP API (axum) over the store and the registry.
//! - [`memory`]: the allocator (jemalloc, for librdkafka too) and its settings.
//! - [`cli`]: the command line (`train`, `eval`, `score`, `run`, `topics`, `ctl`,
//!   `hash-password`).

pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod http;
pub mod input;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod opinion;
pub mod score;
pub mod store;
pub mod stream;
pub mod text;
pub mod train;

pub use model::{Label, Model, ModelHandle, Prediction};
