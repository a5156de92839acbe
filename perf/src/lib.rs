//! ringdns-perf: a DNS load generator with dnsperf's query files, options
//! and summary labels, batched UDP (`sendmmsg`/`recvmmsg`) and pipelined
//! TCP, coordinated-omission-free fixed-rate latency, a ramp mode, JSON
//! results, run comparison and SVG plots.
#![forbid(unsafe_code)]

pub mod args;
pub mod compare;
pub mod plot;
pub mod query;
pub mod ramp;
pub mod relay;
pub mod report;
pub mod run;
pub mod slots;
pub mod stats;
pub mod tcp;
pub mod udp;
