//! One node attempt as both the scheduler and the runner thread see it:
//! the scheduler says when the node is stored as `running` and may cancel
//! it; the runner attaches the jail once it exists. Everything else the
//! runner says goes to the scheduler as a `RunnerEvent` on its channel.
use super::lock;
use crate::exec::JailStop;
use std::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
pub(crate) struct Attempt {
    /// Whether the store took the node's `running` state; None until then.
    recorded: Mutex<Option<bool>>,
    recorded_set: Condvar,
    jail: Mutex<JailSlot>,
}

#[derive(Debug, Default)]
struct JailSlot {
    cancelled: bool,
    stop: Option<JailStop>,
}

impl Attempt {
    /// The scheduler stored the node as `running` (`ok`), or the store refused.
    pub fn set_recorded(&self, ok: bool) {
        *lock(&self.recorded) = Some(ok);
        self.recorded_set.notify_all();
    }

    /// Wait until the node is stored as `running`; false if it was not.
    /// No request leaves before: a supervisor that dies after a request was
    /// sent must find the node `running` on restart (and mark it lost),
    /// never queued.
    pub fn wait_recorded(&self) -> bool {
        let mut r = lock(&self.recorded);
        loop {
            if let Some(ok) = *r {
                return ok;
            }
            r = self
                .recorded_set
                .wait(r)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The jail exists: a cancel from here on stops it. False if the
    /// attempt was cancelled meanwhile; the jail must then not run.
    pub fn attach(&self, stop: JailStop) -> bool {
        let mut j = lock(&self.jail);
        if j.cancelled {
            return false;
        }
        j.stop = Some(stop);
        true
    }

    /// The jail is over (or never ran): nothing left to stop.
    pub fn detach(&self) {
        lock(&self.jail).stop = None;
    }

    /// Cancel the attempt: a jail not yet attached never runs; the stopper
    /// of one attached is returned, for the caller to stop it.
    pub fn cancel(&self) -> Option<JailStop> {
        let mut j = lock(&self.jail);
        j.cancelled = true;
        let stop = j.stop.clone();
        drop(j);
        // A runner still waiting for its `running` record (the store is
        // full or locked) gives up waiting: the node never starts.
        let mut r = lock(&self.recorded);
        if r.is_none() {
            *r = Some(false);
            self.recorded_set.notify_all();
        }
        stop
    }

    /// Whether the attempt was cancelled.
    pub fn cancelled(&self) -> bool {
        lock(&self.jail).cancelled
    }

    /// The jail's stopper, if it is attached (its output could not be
    /// stored: `runner` stops it).
    pub fn stopper(&self) -> Option<JailStop> {
        lock(&self.jail).stop.clone()
    }
}
