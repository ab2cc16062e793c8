//! A value with change notification, like `tokio::sync::watch`, but
//! deterministic: tokio's watch wakes its receivers through one of several
//! `Notify`s chosen by tokio's own random generator, which the simulator
//! cannot seed (NOTES-sim.md), so two runs with one seed could order the
//! woken tasks differently. This one has a single [`Notify`], which wakes
//! its waiters in the order they registered.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
struct Inner<T> {
    // (generation, value): the generation counts every change.
    state: Mutex<(u64, T)>,
    notify: Notify,
}

/// The writing end; clones share the value.
#[derive(Debug)]
pub struct Signal<T>(Arc<Inner<T>>);

impl<T> Clone for Signal<T> {
    fn clone(&self) -> Self {
        Signal(self.0.clone())
    }
}

/// A reading end that remembers the last generation it saw.
#[derive(Debug)]
pub struct Watcher<T> {
    inner: Arc<Inner<T>>,
    seen: u64,
}

impl<T> Clone for Watcher<T> {
    fn clone(&self) -> Self {
        Watcher {
            inner: self.inner.clone(),
            seen: self.seen,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Clone> Signal<T> {
    /// A signal holding `value`.
    pub fn new(value: T) -> Signal<T> {
        Signal(Arc::new(Inner {
            state: Mutex::new((0, value)),
            notify: Notify::new(),
        }))
    }

    /// A reader that has seen the current value.
    pub fn watch(&self) -> Watcher<T> {
        Watcher {
            inner: self.0.clone(),
            seen: lock(&self.0.state).0,
        }
    }

    /// Replaces the value and wakes every reader.
    pub fn set(&self, value: T) {
        {
            let mut s = lock(&self.0.state);
            s.0 += 1;
            s.1 = value;
        }
        self.0.notify.notify_waiters();
    }

    /// Wakes every reader without changing the value (say it again).
    pub fn touch(&self) {
        lock(&self.0.state).0 += 1;
        self.0.notify.notify_waiters();
    }

    /// The current value.
    pub fn get(&self) -> T {
        lock(&self.0.state).1.clone()
    }
}

impl<T: Clone> Watcher<T> {
    /// The current value, marked as seen.
    pub fn borrow_and_update(&mut self) -> T {
        let s = lock(&self.inner.state);
        self.seen = s.0;
        s.1.clone()
    }

    /// Waits until the value changed since this reader last saw it (marks
    /// nothing as seen: call [`Self::borrow_and_update`]).
    pub async fn changed(&mut self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a change in between is not lost.
            notified.as_mut().enable();
            if lock(&self.inner.state).0 != self.seen {
                return;
            }
            notified.await;
        }
    }

    /// Waits until `f` holds for the value.
    pub async fn wait_for(&mut self, f: impl Fn(&T) -> bool) {
        loop {
            if f(&self.borrow_and_update()) {
                return;
            }
            self.changed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_see_each_change_once_and_touch_wakes_them() {
        let s = Signal::new(1);
        let mut w = s.watch();
        let mut late = w.clone();
        s.set(2);
        w.changed().await;
        assert_eq!(w.borrow_and_update(), 2);
        let pending = proto::time::timeout(std::time::Duration::from_millis(10), w.changed());
        assert!(pending.await.is_err(), "no change since");
        s.touch();
        w.changed().await;
        assert_eq!(w.borrow_and_update(), 2);
        late.wait_for(|v| *v == 2).await;
        let waiter = tokio::spawn(async move { late.wait_for(|v| *v == 5).await });
        tokio::task::yield_now().await;
        s.set(5);
        waiter.await.unwrap();
    }
}
