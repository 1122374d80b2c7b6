//! Real-time primitives: small, allocation-free building blocks used on the **audio thread**
//! (and reused by the worker where handy). Everything here is preallocated by its constructor
//! and never allocates, locks or blocks afterwards.

mod delay;
mod ramp;
mod sample;

pub use delay::DelayLine;
pub use ramp::Ramp;
pub use sample::flush;
