//! The block scheduler and its thread. Runs on the **worker thread**: it drains the input ring,
//! cuts the stream into fixed blocks, runs each through the [`Stage`] with the controls the
//! audio thread sent for it and pushes the result to the output ring. It polls (parking for
//! about a millisecond when idle) so the audio thread never has to wake it; in offline renders
//! the audio thread unparks it to save that millisecond. A stage that panics costs one block:
//! it passes dry (the audio thread crossfades as in an under-run) and the stage starts over.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer};

use super::{BlockFailed, ControlEvent, EngineStats, FileWait, Handshake, Stage, StageControls};

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
pub struct WorkerRings<C> {
    pub input: Consumer<f32>,
    pub output: Producer<f32>,
    pub controls: Consumer<ControlEvent<C>>,
    /// Stream positions of blocks that passed dry because the stage panicked.
    pub gaps: Producer<u64>,
}

/// The worker's state: the block being assembled and the stage it goes through. Single
/// threaded; [`WorkerThread`] drives it, unit tests call [`step`](Self::step) directly.
pub struct BlockWorker<C> {
    stage: Box<dyn Stage<Controls = C>>,
    input: Consumer<f32>,
    output: Producer<f32>,
    controls: Consumer<ControlEvent<C>>,
    gaps: Producer<u64>,
    /// The controls of the last block (kept should an event ever be missing).
    current: C,
    handshake: Arc<Handshake>,
    stats: Arc<EngineStats>,
    /// Stream position of the block being assembled (samples since the stream started).
    block_start: u64,
    /// The block being assembled; always `block_len` long, `filled` samples valid.
    block: Vec<f32>,
    filled: usize,
    /// The stage's output for the current block.
    processed: Vec<f32>,
    /// The last restart request this worker has carried out.
    acknowledged: u32,
    /// The stage was reset after a crash since its last block.
    stage_restarted: bool,
    /// Offline: before every block the stage settles its files, waiting at most this long.
    file_wait: Option<Duration>,
    /// Realtime: says in the log when the output fell back to dry audio because the worker was
    /// late.
    lag: Option<LagWatch>,
}

impl<C: StageControls> BlockWorker<C> {
    pub fn new(
        block_len: usize,
        stage: Box<dyn Stage<Controls = C>>,
        rings: WorkerRings<C>,
        handshake: Arc<Handshake>,
        stats: Arc<EngineStats>,
        file_wait: Option<Duration>,
        lag: Option<LagWatch>,
    ) -> Self {
        let acknowledged = handshake.acknowledged.load(Ordering::Acquire);
        Self {
            stage,
            input: rings.input,
            output: rings.output,
            controls: rings.controls,
            gaps: rings.gaps,
            current: C::default(),
            handshake,
            stats,
            block_start: 0,
            block: vec![0.0; block_len],
            filled: 0,
            processed: vec![0.0; block_len],
            acknowledged,
            stage_restarted: false,
            file_wait,
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
            self.process_block();
            return Step::Progress;
        }
        if took_input {
            Step::Progress
        } else {
            if !guarded(&mut *self.stage, &self.stats, "idle", |stage| stage.idle()) {
                self.stage_restarted = true;
            }
            Step::Idle
        }
    }

    /// Runs the full block through the stage and publishes it. A block the stage failed (or
    /// panicked) on is published as silence marked as a gap, which the audio thread treats as missing wet
    /// audio; offline renders therefore go on without waiting for it.
    fn process_block(&mut self) {
        let controls = self.controls_for_block();
        if let Some(limit) = self.file_wait {
            let wait = FileWait::new(Instant::now() + limit, &self.handshake.stop);
            if !guarded(&mut *self.stage, &self.stats, "settle", |stage| stage.settle(&wait)) {
                self.stage_restarted = true;
            }
        }
        // A stage reset by a crash starts a new stream in the middle of this one: its first
        // block's output begins with its warm-up (its delay's worth of silence), so that block
        // passes dry too.
        let warming_up = std::mem::take(&mut self.stage_restarted);
        let started = Instant::now();
        let (block, processed) = (&self.block, &mut self.processed);
        let mut made = Err(BlockFailed);
        if !guarded(&mut *self.stage, &self.stats, "process", |stage| made = stage.process(block, &controls, processed))
        {
            self.stage_restarted = true;
        }
        if made.is_err() || warming_up {
            self.processed.fill(0.0);
            // Room: the gap ring holds a marker for every block that can be in flight.
            let _ = self.gaps.push(self.block_start);
        }
        let lag = self.lag.as_mut().and_then(|lag| lag.block_done(started.elapsed(), Instant::now()));
        if let Some(message) = lag {
            tracing::warn!("{message}; {}", self.stage.lag_advice());
        }
        self.block_start += self.block.len() as u64;
        self.output
            .push_entire_slice(&self.processed)
            .expect("room for the block was checked above and only this thread pushes");
        self.filled = 0;
        self.stats.blocks.fetch_add(1, Ordering::Release);
        self.handshake.progress.fetch_add(1, Ordering::Release);
    }

    /// The controls the audio thread sent for the block that starts at `block_start`: it sends
    /// one event per block, before the block's first sample, so the event is always there.
    fn controls_for_block(&mut self) -> C {
        while let Ok(event) = self.controls.pop() {
            if event.block_start == self.block_start {
                self.current = event.controls;
                break;
            }
        }
        self.current
    }

    /// Drops everything the old stream left behind, then tells the audio thread, which only now
    /// starts the new stream (so nothing of the old one can reach it afterwards).
    fn restart(&mut self, requested: u32) {
        let stale = self.input.slots();
        if let Ok(chunk) = self.input.read_chunk(stale) {
            chunk.commit_all();
        }
        while self.controls.pop().is_ok() {}
        self.filled = 0;
        self.block_start = 0;
        guarded(&mut *self.stage, &self.stats, "reset", |stage| stage.reset());
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

/// Runs `call` on `stage`, catching a panic: it is logged with its message, counted, and the
/// stage starts a new stream (its state may be half updated). Returns whether the call
/// completed.
fn guarded<C: StageControls>(
    stage: &mut dyn Stage<Controls = C>,
    stats: &EngineStats,
    what: &str,
    call: impl FnOnce(&mut dyn Stage<Controls = C>),
) -> bool {
    let Err(panic) = catch_unwind(AssertUnwindSafe(|| call(&mut *stage))) else { return true };
    tracing::error!("RVC Stage: processing crashed in {what} ({}); that block passes dry", panic_message(&*panic));
    stats.crashes.fetch_add(1, Ordering::Relaxed);
    if catch_unwind(AssertUnwindSafe(|| stage.reset())).is_err() {
        tracing::error!("RVC Stage: resetting the crashed stage crashed too");
    }
    false
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("no message")
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
             took {:.0} ms for {:.0} ms of audio",
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
    pub fn spawn<C: StageControls>(mut worker: BlockWorker<C>, handshake: Arc<Handshake>) -> std::io::Result<Self> {
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
        type Controls = ();
        fn process(&mut self, input: &[f32], _: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
            self.0.lock().unwrap().push(input.to_vec());
            for (out, x) in output.iter_mut().zip(input) {
                *out = -x;
            }
            Ok(())
        }
        fn reset(&mut self) {
            self.0.lock().unwrap().push(Vec::new());
        }
    }

    fn worker_with(
        stage: Box<dyn Stage<Controls = ()>>,
        block: usize,
        capacity: usize,
    ) -> (BlockWorker<()>, Producer<f32>, Consumer<f32>, Arc<Handshake>) {
        let (to_worker, input) = rtrb::RingBuffer::new(capacity);
        let (output, from_worker) = rtrb::RingBuffer::new(capacity);
        let (_, controls) = rtrb::RingBuffer::new(1);
        let (gaps, _) = rtrb::RingBuffer::new(1);
        let handshake = Arc::new(Handshake::default());
        let rings = WorkerRings { input, output, controls, gaps };
        (
            BlockWorker::new(block, stage, rings, handshake.clone(), Arc::default(), None, None),
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
        type Controls = ();
        fn process(&mut self, input: &[f32], _: &(), output: &mut [f32]) -> Result<(), BlockFailed> {
            *self.0.lock().unwrap() = Some(std::hint::black_box(1e-39f32) * std::hint::black_box(1.0f32));
            output.copy_from_slice(input);
            Ok(())
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
