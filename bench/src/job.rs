//! What the coordinator asks of one worker process, and what the worker reports back.
//! Both travel as JSON lines over the worker's stdin/stdout.

use serde::{Deserialize, Serialize};

/// The server the clients speak to, and so the protocol they speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// ferry's protobuf protocol (query string, text `connected`, ping every 2 s).
    Ferry,
    /// Centrifugo's JSON protocol over WebSocket (connect with a JWT, subscribe, publish).
    Centrifugo,
    /// The bare broadcast server of this crate (rooms named in the query string).
    Bare,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sender {
    /// convId (ferry) or channel/room (peers) the messages go to.
    pub to: String,
    /// deliverAfter seconds (ferry only; 0 = at once).
    pub deliver_after: u32,
    /// Wait for each ack before sending the next (measures per-request latency).
    pub closed_loop: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Client {
    pub user: String,
    /// host:port of the server this client connects to.
    pub server: String,
    /// Channel or room to subscribe to (peers); ferry routes by membership instead.
    pub subscribe: Option<String>,
    pub send: Option<Sender>,
    /// Record latency of messages pushed to this client from others.
    pub record_pushes: bool,
    /// Never read the socket once connected (a stalled reader).
    pub stalled: bool,
    /// ferry storm: the conversation to sync after reconnecting, and how many
    /// messages it must hold.
    pub sync: Option<(String, u64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub target: Target,
    pub worker: usize,
    /// Local address the worker's sockets are bound to (127.0.0.2, 127.0.0.3, …).
    pub source_ip: String,
    /// HS256 secret the client tokens are signed with.
    pub secret: String,
    pub payload_bytes: usize,
    /// Connections opened at once while connecting (the storm opens all at once).
    pub connect_concurrency: usize,
    pub clients: Vec<Client>,
}

/// Commands from the coordinator, one per stdin line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Start sending: every sender sends `count` messages at `rate` per second (open
    /// loop), from `start_ns` (ns since the Unix epoch, the same for all workers).
    Go {
        start_ns: u64,
        rate: f64,
        count: u64,
    },
    /// Stop sending and report.
    Stop,
    /// Drop every socket, reconnect all at once and sync (storm).
    Reconnect,
    Exit,
}

/// Cumulative counters of one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    pub connected: u64,
    pub connect_errors: u64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub received: u64,
    /// Delayed messages that arrived before their due time.
    pub early: u64,
    pub synced: u64,
    pub sync_errors: u64,
}

/// Events from a worker, one per stdout line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Event {
    Progress(Counters),
    /// Every client has connected (or failed to).
    Ready(Counters),
    Result {
        counters: Counters,
        ack: Vec<(u64, u64)>,
        e2e: Vec<(u64, u64)>,
        connect: Vec<(u64, u64)>,
        /// Error messages seen (the first few).
        samples: Vec<String>,
    },
}
