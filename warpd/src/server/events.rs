//! `StreamEvents`: a session's events in batches, with the printer's lines,
//! and with `follow` the events still being written.
//!
//! One blocking task per stream reads the store (sled) and feeds a bounded
//! channel, so a slow reader slows the reading, not warpd's memory.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;
use warp_proto::trace::Status as TraceStatus;
use warp_proto::warp::{EventBatch, EventLine, SequencedEvent};

use super::lookup;
use super::Shared;
use crate::trace::print::{BlobPrefix, Line, Printer};
use crate::trace::store::StoreError;

/// A batch is sent once it holds this many encoded bytes (gRPC's limit is
/// 4 MiB; one event is far smaller than the rest).
const BATCH_BYTES: usize = 1 << 20;
/// How long one wait for new events lasts before the reader checks whether
/// its client is still there.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

type Sender = mpsc::Sender<Result<EventBatch, Status>>;

/// Streams session `id` from sequence `from` into `tx`, with `strings`
/// bytes of each read buffer in the lines. Blocking: run it on a blocking
/// thread. Ends when the events are all sent (with `follow`: when the
/// session has stopped recording and its events are all sent), or when
/// the client goes away.
pub fn stream(shared: Arc<Shared>, id: String, from: u64, follow: bool, strings: usize, tx: Sender) {
    let mut batch = Batch::default();
    let mut printer: Option<Printer> = None;
    let mut next = from;
    loop {
        // The status before the events: a recording that has ended has
        // written all its events, so an empty read after it is the end.
        let meta = match shared.store.session(&id) {
            Ok(meta) => meta,
            // Followed while it awaits its broker: the recorder stores it
            // once the broker attaches.
            Err(StoreError::NotFound(_)) if follow && shared.sessions.get(&id).is_some() => {
                if tx.is_closed() {
                    return;
                }
                std::thread::sleep(FOLLOW_POLL);
                continue;
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(lookup::status(e)));
                return;
            }
        };
        let printer = printer.get_or_insert_with(|| {
            batch.batch.identity = meta.identity;
            batch.batch.start_ms = meta.start_ms;
            let (store, session) = (Arc::clone(&shared.store), id.clone());
            let blobs: BlobPrefix = Box::new(move |hash, n| store.blob_prefix(&session, hash, n).ok());
            Printer::new(meta.identity.map(|i| i.pid).unwrap_or(0)).with_strings(strings, Some(blobs))
        });
        let recording = meta.status == TraceStatus::Recording as i32;
        let events = match shared.store.events(&id, next) {
            Ok(events) => events,
            Err(e) => {
                let _ = batch.send(&tx);
                let _ = tx.blocking_send(Err(lookup::status(e)));
                return;
            }
        };
        for (seq, event) in events {
            next = seq + 1;
            let lines = printer.push(seq, &event);
            batch.add(SequencedEvent { seq, event: Some(event) }, lines);
            if batch.bytes >= BATCH_BYTES && batch.send(&tx).is_err() {
                return;
            }
        }
        if !follow || !recording {
            break;
        }
        if batch.send(&tx).is_err() {
            return;
        }
        if tx.is_closed() {
            return;
        }
        if let Err(e) = shared.store.wait_for_events(&id, next, FOLLOW_POLL) {
            let _ = tx.blocking_send(Err(lookup::status(e)));
            return;
        }
    }
    if let Some(line) = printer.as_mut().and_then(Printer::finish) {
        batch.add_lines(vec![line]);
    }
    // The last batch goes even when empty, so the client always gets the
    // identity.
    batch.force = true;
    let _ = batch.send(&tx);
}

#[derive(Default)]
struct Batch {
    batch: EventBatch,
    bytes: usize,
    /// Send even when empty.
    force: bool,
}

impl Batch {
    fn add(&mut self, event: SequencedEvent, lines: Vec<Line>) {
        self.bytes += event.encoded_len();
        self.batch.events.push(event);
        self.add_lines(lines);
    }

    fn add_lines(&mut self, lines: Vec<Line>) {
        for line in lines {
            let line = event_line(line);
            self.bytes += line.encoded_len();
            self.batch.lines.push(line);
        }
    }

    /// Sends what is gathered (nothing when empty); Err when the client
    /// went away.
    fn send(&mut self, tx: &Sender) -> Result<(), ()> {
        if self.batch.events.is_empty() && self.batch.lines.is_empty() && !self.force {
            return Ok(());
        }
        // The identity was set for the first batch only; later ones start empty.
        let batch = std::mem::take(&mut self.batch);
        self.bytes = 0;
        self.force = false;
        tx.blocking_send(Ok(batch)).map_err(|_| ())
    }
}

fn event_line(line: Line) -> EventLine {
    EventLine {
        first_seq: line.first,
        last_seq: line.last,
        thread: line.thread,
        kind: line.kind.as_str().into(),
        name: line.name,
        nr: line.nr.unwrap_or(0),
        args: line.args,
        ret: line.ret,
        text: line.text,
        time_us: line.time_us,
        duration_us: line.duration_us,
        exitless: line.exitless,
        has_args: line.decoded_args.is_some(),
        arg_text: line.decoded_args.unwrap_or_default(),
        ret_text: line.decoded_ret.unwrap_or_default(),
        signal: line.signal,
        vector: line.vector,
        rip: line.rip,
        address: line.address,
        exit_code: line.exit_code,
    }
}
