//! The block scheduler and its thread. Runs on the **worker thread**: it drains the input ring,
//! cuts the stream into fixed blocks, runs each through the [`Stage`] and pushes the result to
//! the output ring. It polls (parking for about a millisecond when idle) so the audio thread
//! never has to wake it; in offline renders the audio thread unparks it to save that
//! millisecond.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer};

use super::{ControlEvent, EngineStats, Handshake, RenderMode, Stage};

/// How long the worker sleeps when there is nothing to do.
const IDLE_POLL: Duration = Duration::from_millis(1);
/// The least time between two reports of late output.
const LAG_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What one scheduling step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing could be done: wait for input or for room in the output ring.
    Idle,
    /// Input was taken, a block was processed or a restart was acknowledged.
    Progress,
}

/// The worker's ends of the rings it shares with the audio thread.
pub struct WorkerRings {
    pub input: Consumer<f32>,
    pub output: Producer<f32>,
    pub controls: Consumer<ControlEvent>,
}

/// The worker's state: the block being assembled and the stage it goes through. Single
/// threaded; [`WorkerThread`] drives it, unit tests call [`step`](Self::step) directly.
pub struct BlockWorker {
    stage: Box<dyn Stage>,
    input: Consumer<f32>,
    output: Producer<f32>,
    controls: Consumer<ControlEvent>,
    handshake: Arc<Handshake>,
    /// Stream position of the block being assembled (samples since the stream started).
    block_start: u64,
    /// The block being assembled; always `block_len` long, `filled` samples valid.
    block: Vec<f32>,
    filled: usize,
    /// The stage's output for the current block.
    processed: Vec<f32>,
    /// The last restart request this worker has carried out.
    acknowledged: u32,
    /// Offline: the stage settles its resources before every block.
    settle: bool,
    /// Realtime: says in the log when the output fell back to dry audio because the worker was
    /// late.
    lag: Option<LagWatch>,
}

impl BlockWorker {
    pub fn new(
        block_len: usize,
        stage: Box<dyn Stage>,
        rings: WorkerRings,
        handshake: Arc<Handshake>,
        mode: RenderMode,
        lag: Option<LagWatch>,
    ) -> Self {
        let acknowledged = handshake.acknowledged.load(Ordering::Acquire);
        Self {
            stage,
            input: rings.input,
            output: rings.output,
            controls: rings.controls,
            handshake,
            block_start: 0,
            block: vec![0.0; block_len],
            filled: 0,
            processed: vec![0.0; block_len],
            acknowledged,
            settle: mode == RenderMode::Offline,
            lag,
        }
    }

    /// Does as much as possible without waiting: honour a restart request, fill the block from
    /// the input ring and, once it is full and the output ring has room, process and publish it.
    pub fn step(&mut self) -> Step {
        let requested = self.handshake.requested.load(Ordering::Acquire);
        if requested != self.acknowledged {
            self.restart(requested);
            return Step::Progress;
        }
        let took_input = self.fill_block();
        if self.filled == self.block.len() && self.output.slots() >= self.block.len() {
            self.apply_controls();
            if self.settle {
                self.stage.settle();
            }
            let started = Instant::now();
            self.stage.process(&self.block, &mut self.processed);
            if let Some(message) = self.lag.as_mut().and_then(|lag| lag.block_done(started.elapsed(), Instant::now())) {
                tracing::warn!("{message}");
            }
            self.block_start += self.block.len() as u64;
            self.output
                .push_entire_slice(&self.processed)
                .expect("room for the block was checked above and only this thread pushes");
            self.filled = 0;
            self.handshake.progress.fetch_add(1, Ordering::Release);
            return Step::Progress;
        }
        if took_input {
            Step::Progress
        } else {
            self.stage.idle();
            Step::Idle
        }
    }

    /// Hands the stage every control change that applies from the current block's first
    /// sample on. Changes from a stream that was since restarted are dropped.
    fn apply_controls(&mut self) {
        while let Ok(event) = self.controls.peek() {
            if event.serial == self.acknowledged && event.at > self.block_start {
                break;
            }
            let event = *event;
            let _ = self.controls.pop();
            if event.serial == self.acknowledged {
                self.stage.set_controls(event.controls);
            }
        }
    }

    /// Drops everything the old stream left behind, then tells the audio thread, which only now
    /// starts the new stream (so nothing of the old one can reach it afterwards).
    fn restart(&mut self, requested: u32) {
        let stale = self.input.slots();
        if let Ok(chunk) = self.input.read_chunk(stale) {
            chunk.commit_all();
        }
        self.filled = 0;
        self.block_start = 0;
        self.stage.reset();
        self.acknowledged = requested;
        self.handshake.acknowledged.store(requested, Ordering::Release);
        self.handshake.progress.fetch_add(1, Ordering::Release);
    }

    /// Moves available input into the block; returns whether any sample was taken.
    fn fill_block(&mut self) -> bool {
        let wanted = (self.block.len() - self.filled).min(self.input.slots());
        if wanted == 0 {
            return false;
        }
        let chunk = self.input.read_chunk(wanted).expect("`wanted` is at most the available slots");
        let (first, second) = chunk.as_slices();
        let start = self.filled;
        self.block[start..start + first.len()].copy_from_slice(first);
        self.block[start + first.len()..start + wanted].copy_from_slice(second);
        chunk.commit_all();
        self.filled += wanted;
        true
    }
}

/// Watches the under-run count the audio thread keeps and, when it grew, composes a report
/// with the slowest block since the last one: late output is audible (the dry signal takes
/// over), and the log is where a user without an editor can learn why.
pub struct LagWatch {
    stats: Arc<EngineStats>,
    /// Real time one block stands for.
    block: Duration,
    reported_underruns: u64,
    slowest: Duration,
    last_report: Option<Instant>,
}

impl LagWatch {
    pub fn new(stats: Arc<EngineStats>, block: Duration) -> Self {
        let reported_underruns = stats.underruns();
        LagWatch { stats, block, reported_underruns, slowest: Duration::ZERO, last_report: None }
    }

    /// After each block, with the time it took: the message to log, if output fell back since
    /// the last report and that was at least [`LAG_REPORT_INTERVAL`] ago.
    fn block_done(&mut self, took: Duration, now: Instant) -> Option<String> {
        self.slowest = self.slowest.max(took);
        let underruns = self.stats.underruns();
        let due = self.last_report.is_none_or(|last| now.duration_since(last) >= LAG_REPORT_INTERVAL);
        if underruns == self.reported_underruns || !due {
            return None;
        }
        let message = format!(
            "RVC Stage fell back to the dry signal {} time(s): the worker was late. Its slowest block \
             took {:.0} ms for {:.0} ms of audio; a longer Block Size, a shorter Context or \
             RVC_STAGE_MODEL_PRECISION=int8 lighten it",
            underruns - self.reported_underruns,
            self.slowest.as_secs_f64() * 1000.0,
            self.block.as_secs_f64() * 1000.0
        );
        (self.reported_underruns, self.slowest, self.last_report) = (underruns, Duration::ZERO, Some(now));
        Some(message)
    }
}

/// The worker thread of one engine. Stopping and joining happen in `Drop`.
pub struct WorkerThread {
    handle: Option<JoinHandle<()>>,
    handshake: Arc<Handshake>,
}

impl WorkerThread {
    pub fn spawn(mut worker: BlockWorker, handshake: Arc<Handshake>) -> std::io::Result<Self> {
        let stop = handshake.clone();
        let handle = thread::Builder::new().name("rvc-stage-worker".into()).spawn(move || {
            let run = || {
                while !stop.stop.load(Ordering::Acquire) {
                    if worker.step() == Step::Idle {
                        thread::park_timeout(IDLE_POLL);
                    }
                }
            };
            // Subnormal numbers in a stage's maths (values decaying towards zero) can make a CPU
            // many times slower. This thread is ours alone, so it flushes them for its lifetime.
            // SAFETY: only changes this thread's floating-point control flags, restored on exit;
            // no code here relies on subnormal arithmetic.
            unsafe { no_denormals::no_denormals(run) }
        })?;
        Ok(Self { handle: Some(handle), handshake })
    }

    pub fn thread(&self) -> &Thread {
        self.handle.as_ref().expect("only taken in drop").thread()
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        self.handshake.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            // A panicking stage already printed its message; there is nothing left to clean up.
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Identity;

    /// A stage that records the blocks it sees and marks its output, to check block cutting.
    struct Recorder(Arc<std::sync::Mutex<Vec<Vec<f32>>>>);

    impl Stage for Recorder {
        fn process(&mut self, input: &[f32], output: &mut [f32]) {
            self.0.lock().unwrap().push(input.to_vec());
            for (out, x) in output.iter_mut().zip(input) {
                *out = -x;
            }
        }
        fn reset(&mut self) {
            self.0.lock().unwrap().push(Vec::new());
        }
    }

    fn worker_with(
        stage: Box<dyn Stage>,
        block: usize,
        capacity: usize,
    ) -> (BlockWorker, Producer<f32>, Consumer<f32>, Arc<Handshake>) {
        let (to_worker, input) = rtrb::RingBuffer::new(capacity);
        let (output, from_worker) = rtrb::RingBuffer::new(capacity);
        let (_, controls) = rtrb::RingBuffer::new(1);
        let handshake = Arc::new(Handshake::default());
        let rings = WorkerRings { input, output, controls };
        (
            BlockWorker::new(block, stage, rings, handshake.clone(), RenderMode::Realtime, None),
            to_worker,
            from_worker,
            handshake,
        )
    }

    #[test]
    fn cuts_the_stream_into_fixed_blocks_whatever_the_push_sizes() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut worker, mut to_worker, mut from_worker, _) = worker_with(Box::new(Recorder(seen.clone())), 4, 64);
        let stream: Vec<f32> = (0..11).map(|i| i as f32).collect();
        for part in [&stream[..3], &stream[3..4], &stream[4..11]] {
            to_worker.push_entire_slice(part).unwrap();
            while worker.step() == Step::Progress {}
        }
        let blocks = seen.lock().unwrap().clone();
        assert_eq!(blocks, vec![stream[..4].to_vec(), stream[4..8].to_vec()]);
        // The last three samples wait for the block to fill.
        assert_eq!(from_worker.slots(), 8);
        let mut out = [0.0; 8];
        from_worker.pop_entire_slice(&mut out).unwrap();
        assert_eq!(out.to_vec(), stream[..8].iter().map(|x| -x).collect::<Vec<_>>());
    }

    #[test]
    fn waits_for_room_in_the_output_ring() {
        let (mut worker, mut to_worker, mut from_worker, _) = worker_with(Box::new(Identity), 4, 6);
        to_worker.push_entire_slice(&[1.0; 6]).unwrap();
        while worker.step() == Step::Progress {}
        to_worker.push_entire_slice(&[2.0; 4]).unwrap();
        // One block is out, the second is full but does not fit.
        assert_eq!(worker.step(), Step::Progress); // takes the new input
        assert_eq!(worker.step(), Step::Idle);
        assert_eq!(from_worker.slots(), 4);
        from_worker.read_chunk(4).unwrap().commit_all();
        assert_eq!(worker.step(), Step::Progress);
        assert_eq!(from_worker.slots(), 4);
    }

    #[test]
    fn restart_discards_pending_input_resets_the_stage_and_acknowledges() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut worker, mut to_worker, _from_worker, handshake) = worker_with(Box::new(Recorder(seen.clone())), 4, 64);
        to_worker.push_entire_slice(&[9.0; 3]).unwrap();
        worker.step();
        to_worker.push_entire_slice(&[9.0; 2]).unwrap();
        handshake.requested.store(1, Ordering::Release);
        assert_eq!(worker.step(), Step::Progress);
        assert_eq!(handshake.acknowledged.load(Ordering::Acquire), 1);
        to_worker.push_entire_slice(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        while worker.step() == Step::Progress {}
        assert_eq!(seen.lock().unwrap().clone(), vec![Vec::new(), vec![1.0, 2.0, 3.0, 4.0]]);
    }

    /// Multiplies a subnormal number and records the result.
    struct DenormalProbe(Arc<std::sync::Mutex<Option<f32>>>);

    impl Stage for DenormalProbe {
        fn process(&mut self, input: &[f32], output: &mut [f32]) {
            *self.0.lock().unwrap() = Some(std::hint::black_box(1e-39f32) * std::hint::black_box(1.0f32));
            output.copy_from_slice(input);
        }
    }

    #[test]
    fn the_worker_thread_flushes_subnormals() {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let (worker, mut to_worker, _from_worker, handshake) = worker_with(Box::new(DenormalProbe(seen.clone())), 4, 8);
        let thread = WorkerThread::spawn(worker, handshake).unwrap();
        to_worker.push_entire_slice(&[0.0; 4]).unwrap();
        while seen.lock().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(thread);
        assert_eq!(*seen.lock().unwrap(), Some(0.0));
        assert_ne!(std::hint::black_box(1e-39f32) * std::hint::black_box(1.0f32), 0.0, "only the worker flushes");
    }

    #[test]
    fn dropping_the_thread_stops_and_joins_it() {
        let (worker, _to_worker, _from_worker, handshake) = worker_with(Box::new(Identity), 4, 8);
        let thread = WorkerThread::spawn(worker, handshake.clone()).unwrap();
        assert_eq!(Arc::strong_count(&handshake), 4, "the test, the worker, its loop and the handle");
        drop(thread);
        // The thread's closure (and the worker in it) held the other references: gone means
        // the thread has ended and released them.
        assert_eq!(Arc::strong_count(&handshake), 1);
    }

    #[test]
    fn late_output_is_reported_with_the_slowest_block_at_most_every_ten_seconds() {
        let stats = Arc::new(EngineStats::default());
        let mut lag = LagWatch::new(stats.clone(), Duration::from_millis(100));
        let start = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(lag.block_done(ms(250), start), None, "slow, but the output has not fallen back");
        stats.underruns.fetch_add(2, Ordering::Relaxed);
        let report = lag.block_done(ms(40), start + ms(100)).expect("fell back: reported");
        assert!(report.contains("2 time(s)") && report.contains("took 250 ms for 100 ms"), "{report}");
        stats.underruns.fetch_add(1, Ordering::Relaxed);
        assert_eq!(lag.block_done(ms(120), start + ms(5_000)), None, "not again within ten seconds");
        let report = lag.block_done(ms(30), start + ms(10_200)).expect("due again");
        assert!(report.contains("1 time(s)") && report.contains("took 120 ms"), "{report}");
        assert_eq!(lag.block_done(ms(30), start + ms(30_000)), None, "nothing new");
    }
}
