//! A fixed pool of threads for the work that blocks (running jobs, compiling, forwarding a job
//! to a peer and waiting for its answer), so the HTTP front's connections, which only wait on
//! sockets, never hold a thread. Work is queued without a bound of its own: what feeds the queue
//! is bounded (connections, and at most one request in flight on each).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Task = Box<dyn FnOnce() + Send>;

pub struct Workers {
    queue: Mutex<Option<mpsc::Sender<Task>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    /// Starts `n` threads named `name-i`, each with a stack of `stack` bytes.
    pub fn start(name: &str, n: usize, stack: usize) -> Result<Arc<Workers>, std::io::Error> {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .stack_size(stack)
                .spawn(move || loop {
                    // The lock is held only while waiting for the next task.
                    let task = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(t) => t,
                        Err(_) => return,
                    };
                    task();
                })
                ?;
            threads.push(t);
        }
        Ok(Arc::new(Workers { queue: Mutex::new(Some(tx)), threads: Mutex::new(threads) }))
    }

    /// Runs `f` on a worker; the future completes with its result. None if the pool has been
    /// stopped (or `f` panicked).
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = smol::channel::bounded(1);
        let task: Task = Box::new(move || {
            let _ = tx.try_send(f());
        });
        {
            let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.as_ref()?.send(task).ok()?;
        }
        rx.recv().await.ok()
    }

    /// Stops taking work, lets queued work finish, and joins the threads.
    pub fn stop(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_the_pool_and_comes_back() {
        let w = Workers::start("t", 2, 1 << 20).unwrap();
        let name = smol::block_on(w.run(|| std::thread::current().name().unwrap_or("").to_string()));
        assert!(name.unwrap().starts_with("t-"));
        let both = smol::block_on(async { futures::join!(w.run(|| 1), w.run(|| 2)) });
        assert_eq!(both, (Some(1), Some(2)));
        w.stop();
        assert_eq!(smol::block_on(w.run(|| 3)), None, "a stopped pool takes no work");
    }
}
