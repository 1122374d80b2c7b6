//! The audio-thread half of the engine. Runs on the **audio thread**: it never allocates,
//! locks, logs or makes a system call in realtime mode; all memory is sized at construction.
//!
//! Timeline: output sample `p` carries input sample `m = p - latency`. The current worker
//! stream began with input sample `stream_start`; its output arrives in order. For each output
//! sample the audio thread mixes the delayed dry input with that wet sample, weighted by a ramp
//! `g` that rises only while wet audio is available `fade` samples ahead, and falls (a
//! crossfade to the delayed dry signal, never a gap) as soon as it is not. Because `g` can only
//! be above zero where the next `fade` wet samples were seen to exist, a fade-out always has
//! wet audio to fade from.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use multiversion::multiversion;
use rtrb::{Consumer, Producer};

use super::latency::samples_for_ms;
use super::{
    ControlEvent, EngineConfig, EngineStats, Handshake, LatencyPlan, RenderMode, StageControls, OFFLINE_WAIT_LIMIT,
};
use crate::rt::{flush, DelayLine, Ramp};

/// Smoothing time for dry/wet, output gain and bypass changes.
const CONTROL_RAMP_MS: f64 = 20.0;

/// How long an offline render sleeps between checks while it waits for the worker.
const OFFLINE_WAIT_POLL: Duration = Duration::from_micros(50);

/// The per-call control values, already in their final units. `C` is the stage's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Controls<C> {
    /// Wet share of the output, 0 (dry) ..= 1 (fully processed).
    pub mix: f32,
    /// Linear output gain applied to the mixed signal.
    pub gain: f32,
    /// Output the latency-compensated dry signal at unity gain (crossfaded, like any change).
    pub bypass: bool,
    /// Values for the worker's stage: sent with every worker block that starts in this call.
    pub stage: C,
}

impl<C: Default> Default for Controls<C> {
    fn default() -> Self {
        Self { mix: 1.0, gain: 1.0, bypass: false, stage: C::default() }
    }
}

/// The audio thread's ends of the rings it shares with the worker.
pub struct AudioRings<C> {
    pub to_worker: Producer<f32>,
    pub from_worker: Consumer<f32>,
    pub control_events: Producer<ControlEvent<C>>,
    /// Stream positions of blocks the worker could not process (their wet audio is silence).
    pub gaps: Consumer<u64>,
}

/// Whether the worker stream is live or being restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Input goes to the worker and its output is used.
    Live,
    /// A restart was requested with this number: input is held back, the wet signal fades
    /// out, and the new stream starts once the worker has acknowledged and the fade is done.
    Restarting(u32),
}

pub struct AudioProcessor<C> {
    plan: LatencyPlan,
    latency: i64,
    mode: RenderMode,
    to_worker: Producer<f32>,
    from_worker: Consumer<f32>,
    control_events: Producer<ControlEvent<C>>,
    gaps: Consumer<u64>,
    /// Samples sent to the worker in the current stream.
    stream_sent: u64,
    handshake: Arc<Handshake>,
    /// Unparked in offline mode only, so the worker does not sleep through a bounce.
    worker_thread: Thread,
    stats: Arc<EngineStats>,
    /// One latency-compensation line per host channel.
    dry: Vec<DelayLine>,
    /// Scratch buffers, `max_buffer` long: mono downmix, wet samples, wet weight, gain.
    mono: Vec<f32>,
    wet: Vec<f32>,
    wet_weight: Vec<f32>,
    gain_curve: Vec<f32>,
    /// Output-timeline index of the next sample (`p`).
    position: i64,
    /// First input index sent in the current worker stream; wet audio is used from here on.
    stream_start: i64,
    /// Input index before which the dry delay lines hold silence (they start empty and
    /// `reset` empties them).
    silent_before: i64,
    /// Input index of the next sample waiting in `from_worker`. A stage with algorithmic delay
    /// `S` first emits `S` warm-up samples, which belong to indices before `stream_start`.
    wet_next: i64,
    stream: Stream,
    /// The last restart number this side has requested.
    restart_serial: u32,
    /// Wet availability ramp (`g`).
    availability: Ramp,
    mix: Ramp,
    gain: Ramp,
    /// Whether the last sample was an under-run, so each under-run is counted once.
    late: bool,
    /// [`OFFLINE_WAIT_LIMIT`], a field so tests can shorten it.
    offline_wait_limit: Duration,
    /// Offline only: the worker's progress count when a wait last timed out. While it stays
    /// there the worker is considered hung and not waited for again.
    hung_at: Option<u64>,
}

impl<C: StageControls> AudioProcessor<C> {
    pub(super) fn new(
        config: &EngineConfig,
        plan: LatencyPlan,
        rings: AudioRings<C>,
        handshake: Arc<Handshake>,
        worker_thread: Thread,
        stats: Arc<EngineStats>,
    ) -> Self {
        let latency = plan.total();
        let control_ramp = samples_for_ms(CONTROL_RAMP_MS, config.sample_rate);
        let restart_serial = handshake.requested.load(Ordering::Relaxed);
        Self {
            plan,
            latency: latency as i64,
            mode: config.mode,
            to_worker: rings.to_worker,
            from_worker: rings.from_worker,
            control_events: rings.control_events,
            gaps: rings.gaps,
            stream_sent: 0,
            handshake,
            worker_thread,
            stats,
            dry: (0..config.channels).map(|_| DelayLine::new(latency)).collect(),
            mono: vec![0.0; config.max_buffer],
            wet: vec![0.0; config.max_buffer],
            wet_weight: vec![0.0; config.max_buffer],
            gain_curve: vec![0.0; config.max_buffer],
            position: 0,
            stream_start: 0,
            silent_before: 0,
            wet_next: -(plan.stage as i64),
            stream: Stream::Live,
            restart_serial,
            availability: Ramp::new(0.0, plan.fade),
            mix: Ramp::new(1.0, control_ramp),
            gain: Ramp::new(1.0, control_ramp),
            late: false,
            offline_wait_limit: OFFLINE_WAIT_LIMIT,
            hung_at: None,
        }
    }

    pub fn latency_samples(&self) -> usize {
        self.latency as usize
    }

    pub fn plan(&self) -> &LatencyPlan {
        &self.plan
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// Processes `channels` in place: on entry they hold the host's input, on return the
    /// output. All channels must have the same length; any length is accepted (calls longer
    /// than the configured maximum are split). Channels beyond the configured count are
    /// silenced.
    pub fn process(&mut self, channels: &mut [&mut [f32]], controls: Controls<C>) {
        let frames = channels.iter().map(|c| c.len()).min().unwrap_or(0);
        let max = self.mono.len();
        let mut start = 0;
        while start < frames {
            let len = (frames - start).min(max);
            self.process_chunk(channels, start..start + len, controls);
            start += len;
        }
        for extra in channels.iter_mut().skip(self.dry.len()) {
            extra.fill(0.0);
        }
    }

    /// Clears all state without allocating: the dry lines fall silent and the worker stream
    /// restarts. After `latency` samples of silence the output is wet from the first sample if
    /// the worker acknowledged in time (always, offline); otherwise it is delayed dry audio
    /// that fades into wet once the worker has caught up.
    pub fn reset(&mut self) {
        for line in &mut self.dry {
            line.clear();
        }
        self.silent_before = self.position;
        self.availability.jump_to(0.0);
        self.late = false;
        if self.stream == Stream::Live && self.position == self.stream_start {
            // Nothing was sent since the stream began: it is already fresh.
            return;
        }
        self.request_restart();
    }

    fn request_restart(&mut self) {
        self.restart_serial = self.restart_serial.wrapping_add(1);
        self.handshake.requested.store(self.restart_serial, Ordering::Release);
        self.stream = Stream::Restarting(self.restart_serial);
        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        self.wake_worker_offline();
    }

    fn process_chunk(&mut self, channels: &mut [&mut [f32]], range: std::ops::Range<usize>, controls: Controls<C>) {
        let n = range.len();
        let first_input = self.position - self.latency;
        self.finish_restart();
        self.downmix(channels, range.clone());
        self.send_to_worker(n, controls.stage);
        if self.mode == RenderMode::Offline {
            self.wait_for_wet(first_input + n as i64 - 1);
        }
        let available_until = self.fetch_wet(first_input, n);
        let constant = self.weights(first_input, n, available_until, controls);
        let wet = &self.wet[..n];
        let curves = (&self.wet_weight[..n], &self.gain_curve[..n]);
        for (channel, line) in channels.iter_mut().zip(&mut self.dry) {
            // One pass per channel: the input enters the delay line, and the delayed (dry)
            // sample comes out, mixed with the wet one.
            line.process_runs(&mut channel[range.clone()], |run, line, offset| {
                let wet = &wet[offset..offset + run.len()];
                match constant {
                    Some((weight, gain)) => mix_constant(run, line, wet, weight, gain),
                    None => {
                        let (weights, gains) =
                            (&curves.0[offset..offset + run.len()], &curves.1[offset..offset + run.len()]);
                        mix_curves(run, line, wet, weights, gains);
                    }
                }
            });
        }
        self.position += n as i64;
    }

    /// Starts the new worker stream once the worker has acknowledged the restart and the wet
    /// signal has faded out. In offline mode waits (bounded) for the acknowledgement.
    fn finish_restart(&mut self) {
        let Stream::Restarting(serial) = self.stream else { return };
        if self.mode == RenderMode::Offline && self.availability.is_at(0.0) {
            // A hung worker is caught by the timeout; the output then stays dry until the
            // worker acknowledges.
            self.wait_until(|this| this.handshake.acknowledged.load(Ordering::Acquire) == serial);
        }
        if self.handshake.acknowledged.load(Ordering::Acquire) != serial || !self.availability.is_at(0.0) {
            return;
        }
        // Everything still queued belongs to the old stream.
        let stale = self.from_worker.slots();
        if let Ok(chunk) = self.from_worker.read_chunk(stale) {
            chunk.commit_all();
        }
        while self.gaps.pop().is_ok() {}
        self.stream_start = self.position;
        self.wet_next = self.position - self.plan.stage as i64;
        self.stream = Stream::Live;
        self.stream_sent = 0;
    }

    /// Writes the sanitised channel average of the host's input to `mono`.
    fn downmix(&mut self, channels: &[&mut [f32]], range: std::ops::Range<usize>) {
        let used = self.dry.len().min(channels.len());
        let mono = &mut self.mono[..range.len()];
        // Mono and stereo, the plugin's layouts, take one pass; other counts (the CLI) three.
        match &channels[..used] {
            [only] => copy_flushed(mono, &only[range]),
            [left, right] => average_flushed(mono, &left[range.clone()], &right[range]),
            all => {
                for (c, channel) in all.iter().enumerate() {
                    accumulate_flushed(mono, &channel[range.clone()], c == 0);
                }
                scale_flushed(mono, 1.0 / used as f32);
            }
        }
    }

    /// Hands the downmix to the worker, with the stage controls for every worker block that
    /// starts in it (the values in effect at the block's first sample). If the worker has
    /// stalled so long that the ring is full, the stream restarts instead of dropping samples
    /// silently, because a gap would shift every later wet sample against its dry counterpart.
    fn send_to_worker(&mut self, n: usize, controls: C) {
        if self.stream != Stream::Live {
            return;
        }
        let block = self.plan.block as u64;
        let mut block_start = self.stream_sent.div_ceil(block) * block;
        let events = (self.stream_sent + n as u64).saturating_sub(block_start).div_ceil(block) as usize;
        // The control ring holds an event for every block that can be in flight, so it is only
        // full when the sample ring is.
        if self.to_worker.slots() < n || self.control_events.slots() < events {
            if !self.late {
                self.stats.count_underrun();
            }
            self.late = true;
            self.request_restart();
            return;
        }
        for _ in 0..events {
            let _ = self.control_events.push(ControlEvent { block_start, controls });
            block_start += block;
        }
        let _ = self.to_worker.push_entire_slice(&self.mono[..n]);
        self.stream_sent += n as u64;
        self.wake_worker_offline();
    }

    fn wake_worker_offline(&self) {
        if self.mode == RenderMode::Offline {
            self.worker_thread.unpark();
        }
    }

    /// Offline only: waits until wet audio reaches `fade` samples past `last_input`, the most
    /// any sample of this call can need, so that offline output never depends on timing.
    /// Returns at once when that is already the case (e.g. before the stream's first sample).
    fn wait_for_wet(&mut self, last_input: i64) {
        if self.stream != Stream::Live {
            return;
        }
        let needed_end = last_input + self.plan.fade as i64 + 1;
        let wet_next = self.wet_next;
        self.wait_until(|this| wet_next + this.from_worker.slots() as i64 >= needed_end);
    }

    /// Offline only: polls `ready`, waking the worker, for at most `offline_wait_limit` —
    /// or not at all while the worker has made no progress since a wait last timed out.
    fn wait_until(&mut self, mut ready: impl FnMut(&Self) -> bool) {
        let progress = self.handshake.progress.load(Ordering::Acquire);
        if self.hung_at == Some(progress) {
            return;
        }
        self.hung_at = None;
        let deadline = Instant::now() + self.offline_wait_limit;
        while !ready(self) {
            if Instant::now() >= deadline {
                self.hung_at = Some(self.handshake.progress.load(Ordering::Acquire));
                return;
            }
            self.worker_thread.unpark();
            std::thread::sleep(OFFLINE_WAIT_POLL);
        }
    }

    /// Drops wet samples that arrived too late to be used, copies the ones this call covers
    /// into `wet` (zeros where there are none) and returns the end of available wet audio.
    fn fetch_wet(&mut self, first_input: i64, n: usize) -> i64 {
        let end_input = first_input + n as i64;
        // The worker usually runs a block ahead, so the locally cached count is enough and the
        // worker's index (a cache line the other core keeps writing) is read only when not.
        let mut queued = self.from_worker.cached_slots() as i64;
        if self.wet_next + queued < end_input + self.plan.fade as i64 {
            queued = self.from_worker.slots() as i64;
        }
        if self.wet_next < first_input {
            let stale = (first_input - self.wet_next).min(queued);
            self.consume_wet(stale as usize);
            queued -= stale;
        }
        let available_until = self.wet_next + queued;
        let from = self.wet_next.max(first_input);
        let count = (available_until.min(end_input) - from).max(0) as usize;
        let offset = (from - first_input) as usize;
        let wet = &mut self.wet[..n];
        wet[..offset.min(n)].fill(0.0);
        if count > 0 {
            match self.from_worker.read_chunk(count) {
                Ok(chunk) => {
                    let (head, tail) = chunk.as_slices();
                    wet[offset..offset + head.len()].copy_from_slice(head);
                    wet[offset + head.len()..offset + count].copy_from_slice(tail);
                    chunk.commit_all();
                    self.wet_next += count as i64;
                }
                // `count` never exceeds what is queued; this arm only keeps a panic path off
                // the audio thread.
                Err(_) => wet[offset..offset + count].fill(0.0),
            }
        }
        wet[(offset + count).min(n)..].fill(0.0);
        available_until
    }

    /// Drops the markers of failed blocks that ended before `first_input`: this call and every
    /// later one is past them.
    fn drop_passed_gaps(&mut self, first_input: i64) {
        let origin = self.wet_origin();
        while let Ok(&gap) = self.gaps.peek() {
            if origin + (gap + self.plan.block as u64) as i64 > first_input {
                break;
            }
            let _ = self.gaps.pop();
        }
    }

    /// Input index of the worker's output sample 0 of the current stream.
    fn wet_origin(&self) -> i64 {
        self.stream_start - self.plan.stage as i64
    }

    fn consume_wet(&mut self, count: usize) {
        if let Ok(chunk) = self.from_worker.read_chunk(count) {
            chunk.commit_all();
        }
        self.wet_next += count as i64;
    }

    /// Computes this call's wet weight (`mix × g`) and gain. Returns them as constants when
    /// nothing ramps, which is the common case and keeps the mixing loop trivial.
    fn weights(
        &mut self,
        first_input: i64,
        n: usize,
        available_until: i64,
        controls: Controls<C>,
    ) -> Option<(f32, f32)> {
        let (mix_target, gain_target) = if controls.bypass { (0.0, 1.0) } else { (controls.mix, controls.gain) };
        // Samples [usable_from, usable_until) have wet audio now and `fade` samples beyond.
        let live = self.stream == Stream::Live;
        let index = |input: i64| (input - first_input).clamp(0, n as i64) as usize;
        let usable_from = index(self.stream_start);
        let fade = self.plan.fade as i64;
        let usable_until = if live { index(available_until - fade) } else { 0 };
        // Where the dry signal is known silence, the wet one is too (the stage hears silence
        // there), so the weight may already stand at 1 before the stream starts — as long as
        // wet audio is available `fade` samples ahead like anywhere else. A stream that starts
        // from silence (a new engine, or after a reset) is then wet from its first sample.
        let silent_until = if live { index(self.silent_before) } else { 0 };
        // Blocks the worker could not make carry no wet audio: each is missing from `fade`
        // samples before it (so the output has faded to dry when it begins) to its end. Their
        // markers are in order; this call looks at them without taking them.
        self.drop_passed_gaps(first_input);
        let (origin, block) = (self.wet_origin(), self.plan.block as i64);
        let pending = self.gaps.slots();
        let Ok(gaps) = self.gaps.read_chunk(pending) else { return None };
        let (head, tail) = gaps.as_slices();
        let mut missing =
            head.iter().chain(tail).map(|&gap| (index(origin + gap as i64 - fade), index(origin + gap as i64 + block)));
        let mut next_missing = missing.next().filter(|_| live);

        let whole_call_usable = live
            && usable_until == n
            && (silent_until == n || usable_from <= silent_until)
            && next_missing.is_none_or(|(from, until)| from >= n || until == 0);
        if whole_call_usable
            && self.availability.is_at(1.0)
            && self.mix.is_at(mix_target)
            && self.gain.is_at(gain_target)
        {
            self.count_underrun(live, false);
            return Some((mix_target, gain_target));
        }
        let mut late = false;
        for (i, (weight, gain)) in self.wet_weight[..n].iter_mut().zip(&mut self.gain_curve[..n]).enumerate() {
            while next_missing.is_some_and(|(_, until)| until <= i) {
                next_missing = missing.next();
            }
            let in_gap = next_missing.is_some_and(|(from, until)| from <= i && i < until);
            let available = (i < silent_until || i >= usable_from) && i < usable_until;
            let usable = available && !in_gap;
            late |= live && i >= usable_from && !usable;
            *weight = self.mix.next(mix_target) * self.availability.next(if usable { 1.0 } else { 0.0 });
            *gain = self.gain.next(gain_target);
        }
        self.count_underrun(live, late);
        None
    }

    /// Counts an under-run when wet audio was missing for samples the live stream covers
    /// (`late_now`), once per episode.
    fn count_underrun(&mut self, live: bool, late_now: bool) {
        if !live {
            return;
        }
        if late_now && !self.late {
            self.stats.count_underrun();
        }
        self.late = late_now;
    }
}

// The loops below are the audio thread's whole per-sample work. They are compiled for AVX2
// as well as the baseline and picked at run time, since plugins ship as one binary.

/// `mono = flush(x)`.
#[multiversion(targets("x86_64+avx2+fma"))]
fn copy_flushed(mono: &mut [f32], x: &[f32]) {
    for (m, x) in mono.iter_mut().zip(x) {
        *m = flush(*x);
    }
}

/// `mono = flush((flush(left) + flush(right)) / 2)`.
#[multiversion(targets("x86_64+avx2+fma"))]
fn average_flushed(mono: &mut [f32], left: &[f32], right: &[f32]) {
    for ((m, l), r) in mono.iter_mut().zip(left).zip(right) {
        *m = flush((flush(*l) + flush(*r)) * 0.5);
    }
}

/// `sum = x` (if `first`) or `sum += x`, with `x` flushed.
#[multiversion(targets("x86_64+avx2+fma"))]
fn accumulate_flushed(sum: &mut [f32], x: &[f32], first: bool) {
    if first {
        for (s, x) in sum.iter_mut().zip(x) {
            *s = flush(*x);
        }
    } else {
        for (s, x) in sum.iter_mut().zip(x) {
            *s += flush(*x);
        }
    }
}

/// `x = flush(x * scale)`.
#[multiversion(targets("x86_64+avx2+fma"))]
fn scale_flushed(samples: &mut [f32], scale: f32) {
    for x in samples {
        *x = flush(*x * scale);
    }
}

/// Stores the new input (sanitised) in the delay line and replaces it in `run` by
/// `(dry * (1 - weight) + wet * weight) * gain`, flushed, where `dry` is the delayed input from
/// `line`. This form is exact at the ends: weight 1 gives the wet sample, 0 the dry one.
/// The steady-state path.
#[multiversion(targets("x86_64+avx2+fma"))]
fn mix_constant(run: &mut [f32], line: &mut [f32], wet: &[f32], weight: f32, gain: f32) {
    let dry_weight = 1.0 - weight;
    for ((x, slot), w) in run.iter_mut().zip(line.iter_mut()).zip(wet) {
        let dry = std::mem::replace(slot, flush(*x));
        *x = flush((dry * dry_weight + *w * weight) * gain);
    }
}

/// The same with per-sample weight and gain, used while anything ramps.
#[multiversion(targets("x86_64+avx2+fma"))]
fn mix_curves(run: &mut [f32], line: &mut [f32], wet: &[f32], weights: &[f32], gains: &[f32]) {
    for ((((x, slot), w), k), g) in run.iter_mut().zip(line.iter_mut()).zip(wet).zip(weights).zip(gains) {
        let dry = std::mem::replace(slot, flush(*x));
        *x = flush((dry * (1.0 - *k) + *w * *k) * *g);
    }
}

#[cfg(test)]
mod tests {
    //! The audio half driven deterministically: the test plays the worker, moving samples
    //! between the rings itself, so under-runs happen exactly where it decides.
    use super::*;
    use crate::engine::BLOCK_MS_RANGE;

    const RATE: f64 = 1000.0; // 50-sample blocks, 10-sample fades: easy to reason about
    const CALL: usize = 10;

    struct Harness {
        audio: AudioProcessor<u32>,
        worker_in: Consumer<f32>,
        worker_out: Producer<f32>,
        worker_controls: Consumer<ControlEvent<u32>>,
        worker_gaps: Producer<u64>,
        handshake: Arc<Handshake>,
    }

    impl Harness {
        fn new(mode: RenderMode) -> Self {
            Self::with_stage_delay(mode, 0)
        }

        /// A worker whose stage delays its output by `stage` samples.
        fn with_stage_delay(mode: RenderMode, stage: usize) -> Self {
            let config = EngineConfig {
                sample_rate: RATE,
                max_buffer: CALL,
                channels: 1,
                block_ms: *BLOCK_MS_RANGE.start(),
                mode,
                ..EngineConfig::default()
            };
            let plan = LatencyPlan::new(RATE, CALL, config.block_ms, stage);
            let (to_worker, worker_in) = rtrb::RingBuffer::new(plan.ring_capacity());
            let (worker_out, from_worker) = rtrb::RingBuffer::new(plan.ring_capacity());
            let handshake = Arc::new(Handshake::default());
            let (control_events, worker_controls) = rtrb::RingBuffer::new(crate::engine::blocks_in_flight(&plan));
            let (worker_gaps, gaps) = rtrb::RingBuffer::new(crate::engine::blocks_in_flight(&plan));
            let rings = AudioRings { to_worker, from_worker, control_events, gaps };
            let thread = std::thread::current();
            let audio = AudioProcessor::new(&config, plan, rings, handshake.clone(), thread, Arc::default());
            let mut harness = Self { audio, worker_in, worker_out, worker_controls, worker_gaps, handshake };
            // The stage's warm-up: its first `stage` output samples precede the stream.
            for _ in 0..stage {
                harness.worker_out.push(0.0).unwrap();
            }
            harness
        }

        /// An infinitely fast worker: everything sent comes back at once, halved.
        fn serve(&mut self) {
            while let Ok(x) = self.worker_in.pop() {
                self.worker_out.push(0.5 * x).unwrap();
            }
            while self.worker_controls.pop().is_ok() {}
            let requested = self.handshake.requested.load(Ordering::Acquire);
            self.handshake.acknowledged.store(requested, Ordering::Release);
            self.handshake.progress.fetch_add(1, Ordering::Release);
        }

        /// Runs `before + stall + after` calls; the worker serves all but the `stall` middle ones,
        /// then catches up at once. Returns the output.
        fn run_with_stall(&mut self, before: usize, stall: usize, after: usize) -> Vec<f32> {
            let mut outputs = Vec::new();
            for call in 0..before + stall + after {
                if !(before..before + stall).contains(&call) {
                    self.serve();
                }
                outputs.extend(self.call());
            }
            outputs
        }

        /// Processes a call of constant 1.0 input and returns the output.
        fn call(&mut self) -> [f32; CALL] {
            let mut block = [1.0; CALL];
            self.audio.process(&mut [&mut block[..]], Controls::default());
            block
        }

        /// Serves and processes `samples` of constant 1.0 input in calls of `call` samples.
        fn run_in_calls(&mut self, samples: usize, call: usize) -> Vec<f32> {
            let mut output = vec![1.0; samples];
            for chunk in output.chunks_mut(call) {
                self.serve();
                self.audio.process(&mut [chunk], Controls::default());
            }
            output
        }
    }

    /// With dry = 1 and wet = 0.5, output = 1 − g/2: returns g for each sample.
    fn wet_weights(outputs: &[f32]) -> Vec<f32> {
        outputs.iter().map(|out| 2.0 * (1.0 - out)).collect()
    }

    fn assert_ramps_by_fade_steps(weights: &[f32]) {
        for pair in weights.windows(2) {
            assert!((pair[1] - pair[0]).abs() <= 0.1 + 1e-6, "jump {} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn late_worker_fades_to_dry_and_back_and_counts_one_underrun() {
        let mut h = Harness::new(RenderMode::Realtime);
        let latency = h.audio.latency_samples();
        let outputs = h.run_with_stall(30, 20, 30); // a 200-sample stall
        let weights = wet_weights(&outputs[latency..]);
        assert_ramps_by_fade_steps(&weights);
        let dry_from = weights.iter().position(|g| *g == 0.0).unwrap();
        let first_wet = weights.iter().position(|g| *g == 1.0).unwrap();
        let back_to_wet = weights[dry_from..].iter().position(|g| *g == 1.0).unwrap() + dry_from;
        assert!(first_wet < dry_from && dry_from < back_to_wet, "wet, then dry during the stall, then wet again");
        assert_eq!(h.audio.stats().underruns(), 1);
        assert_eq!(h.audio.stats().restarts(), 0, "a short stall does not restart the stream");
    }

    #[test]
    fn a_block_the_worker_could_not_process_crossfades_to_dry_and_back() {
        let mut h = Harness::new(RenderMode::Realtime);
        let latency = h.audio.latency_samples();
        // The worker marks the block at stream position 200 (samples 200..250) as a gap.
        h.worker_gaps.push(200).unwrap();
        let outputs = h.run_with_stall(60, 0, 0);
        let weights = wet_weights(&outputs[latency..]);
        assert_ramps_by_fade_steps(&weights);
        assert!(weights[..190].iter().all(|g| *g == 1.0), "wet before the gap's fade");
        assert!(weights[200..250].iter().all(|g| *g == 0.0), "dry for the whole gap");
        assert!(weights[260..].iter().all(|g| *g == 1.0), "wet again after it");
        assert_eq!(h.audio.stats().underruns(), 1, "counted like an under-run");
    }

    /// Failed blocks (two in a row, then another) of a stage with its own delay: the output is
    /// dry exactly over them, crossfaded before and after, the same whatever the call sizes.
    #[test]
    fn failed_blocks_are_dry_exactly_where_they_are_whatever_the_call_sizes() {
        let stage = 7;
        let renders: Vec<Vec<f32>> = [3, 10, 7]
            .iter()
            .map(|&call| {
                let mut h = Harness::with_stage_delay(RenderMode::Realtime, stage);
                for gap in [200, 250, 450] {
                    h.worker_gaps.push(gap).unwrap();
                }
                let latency = h.audio.latency_samples();
                let output = h.run_in_calls(latency + 700, call);
                wet_weights(&output[latency..])
            })
            .collect();
        assert_eq!(renders[0], renders[1]);
        assert_eq!(renders[0], renders[2]);
        let weights = &renders[0];
        assert_ramps_by_fade_steps(weights);
        // Worker output sample j is input sample j - 7: the gaps cover inputs 193..293 and 443..493.
        assert!(weights[20..183].iter().all(|g| *g == 1.0), "wet until the fade before the gap");
        assert!(weights[193..293].iter().all(|g| *g == 0.0) && weights[443..493].iter().all(|g| *g == 0.0));
        assert!(weights[303..433].iter().all(|g| *g == 1.0) && weights[503..].iter().all(|g| *g == 1.0));
    }

    #[test]
    fn one_control_event_per_worker_block_with_the_value_at_its_first_sample() {
        let mut h = Harness::new(RenderMode::Realtime);
        let mut block = [1.0; 7];
        for call in 0..30 {
            h.audio.process(&mut [&mut block[..]], Controls { stage: call, ..Controls::default() });
        }
        // 210 samples in 7-sample calls: blocks start at 0, 50, 100, 150 and 200, inside calls
        // 0, 7 (49..56), 14 (98..105), 21 (147..154) and 28 (196..203).
        let events: Vec<(u64, u32)> =
            std::iter::from_fn(|| h.worker_controls.pop().ok()).map(|e| (e.block_start, e.controls)).collect();
        assert_eq!(events, [(0, 0), (50, 7), (100, 14), (150, 21), (200, 28)]);
    }

    #[test]
    fn a_stall_longer_than_the_ring_restarts_the_stream_smoothly() {
        let mut h = Harness::new(RenderMode::Realtime);
        let latency = h.audio.latency_samples();
        let stall = h.audio.plan.ring_capacity() / CALL + 1; // calls: enough to fill the ring
        let outputs = h.run_with_stall(30, stall, 60);
        let weights = wet_weights(&outputs[latency..]);
        assert_ramps_by_fade_steps(&weights);
        assert_eq!(h.audio.stats().restarts(), 1);
        assert_eq!(h.audio.stats().underruns(), 1, "one stall, one under-run, restart or not");
        assert_eq!(h.audio.stream, Stream::Live);
        assert!(weights.ends_with(&[1.0; 10]), "wet again after the restart");
    }

    #[test]
    fn a_stream_that_starts_from_silence_is_wet_from_its_first_sample() {
        let mut h = Harness::new(RenderMode::Realtime);
        let latency = h.audio.latency_samples();
        let mut outputs = Vec::new();
        for _ in 0..40 {
            h.serve();
            outputs.extend(h.call());
        }
        // Before the latency: silence from the empty delay line. Then wet from the first
        // sample: the stream started from silence, so there is nothing to fade in from.
        assert!(outputs[..latency].iter().all(|x| *x == 0.0));
        assert!(wet_weights(&outputs[latency..]).iter().all(|g| *g == 1.0));
        assert_eq!(h.audio.stats().underruns(), 0);
    }

    #[test]
    fn offline_render_waits_for_the_worker_but_not_forever_for_a_hung_one() {
        let mut h = Harness::new(RenderMode::Offline);
        h.audio.offline_wait_limit = Duration::from_millis(50);
        let latency = h.audio.latency_samples();
        let mut outputs = Vec::new();
        for _ in 0..40 {
            outputs.extend(h.call()); // nobody serves: the worker is hung
        }
        // The first wait times out, the rest do not wait; the output is the delayed dry signal.
        assert_eq!(h.audio.stats().underruns(), 1);
        assert!(outputs[..latency].iter().all(|x| *x == 0.0));
        assert!(outputs[latency..].iter().all(|x| *x == 1.0));
        assert!(h.audio.hung_at.is_some());
        // A restart the hung worker never acknowledges does not make every call wait either.
        h.audio.reset();
        for _ in 0..5 {
            h.call();
            assert!(h.audio.hung_at.is_some());
        }
        // Once the worker delivers again, waiting resumes and wet audio comes back.
        let mut later = Vec::new();
        for _ in 0..40 {
            h.serve();
            later.extend(h.call());
        }
        assert!(later.contains(&0.5));
    }

    #[test]
    fn reset_restarts_the_stream_after_the_worker_acknowledges() {
        let mut h = Harness::new(RenderMode::Realtime);
        for _ in 0..30 {
            h.serve();
            h.call();
        }
        h.audio.reset();
        assert_eq!(h.audio.stream, Stream::Restarting(1));
        // Until the worker acknowledges, nothing is sent to it.
        h.worker_in.read_chunk(h.worker_in.slots()).unwrap().commit_all();
        h.call();
        assert_eq!(h.worker_in.slots(), 0);
        h.serve();
        h.call();
        assert_eq!(h.audio.stream, Stream::Live);
        assert_eq!(h.worker_in.slots(), CALL);
        assert_eq!(h.audio.stats().restarts(), 1);
    }
}
