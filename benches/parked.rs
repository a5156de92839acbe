//! The parked-query executor: time per query for a batch of 256 queries that each
//! park once and are woken from the executor's own thread (forward's usual case: the
//! worker reads the upstream reply), then finish. Covers spawn, two polls, the wake and
//! the slot's reuse; once with a small task and once with a task whose state is as large
//! as a forwarded query's (1.6 KB: the slots' resident tasks make its cost the same).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ringdns::server::parked::{Inbox, Parked};

const BATCH: usize = 256;

/// Parks once (handing its waker to `wakers`), then finishes.
fn query(wakers: Rc<RefCell<Vec<Waker>>>) -> impl Future<Output = ()> {
    let mut parked = false;
    std::future::poll_fn(move |cx| {
        if parked {
            Poll::Ready(())
        } else {
            parked = true;
            wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    })
}

type Wakers = Rc<RefCell<Vec<Waker>>>;

/// A slot's resident task: one `query` per job.
async fn small(inbox: Rc<Inbox<Wakers>>) {
    loop {
        let w = inbox.next().await;
        query(w).await;
    }
}

/// As `small`, with 1.6 KB of state held across the park.
async fn large(inbox: Rc<Inbox<Wakers>>) {
    loop {
        let w = inbox.next().await;
        let mut pad = [0u8; 1600];
        pad[0] = 1;
        query(w).await;
        std::hint::black_box(&mut pad);
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parked");
    g.throughput(Throughput::Elements(BATCH as u64));
    let wakers = Rc::new(RefCell::new(Vec::with_capacity(BATCH)));
    let mut p = Parked::new();
    g.bench_function("spawn, park, wake on own thread, finish (per 256)", |b| {
        b.iter_batched(
            || (),
            |()| {
                for _ in 0..BATCH {
                    p.spawn(Rc::clone(&wakers), small);
                }
                p.run();
                for w in wakers.borrow_mut().drain(..) {
                    w.wake();
                }
                p.run();
                assert_eq!(p.running(), 0);
            },
            BatchSize::SmallInput,
        );
    });
    let mut p = Parked::new();
    g.bench_function("the same, 1.6 KB of task state (per 256)", |b| {
        b.iter_batched(
            || (),
            |()| {
                for _ in 0..BATCH {
                    p.spawn(Rc::clone(&wakers), large);
                }
                p.run();
                for w in wakers.borrow_mut().drain(..) {
                    w.wake();
                }
                p.run();
                assert_eq!(p.running(), 0);
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
