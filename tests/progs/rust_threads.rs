//! std::thread, std::sync::mpsc, Mutex, Barrier and scoped threads, as a
//! Rust program uses them (built static: `rustc -C target-feature=+crt-static`).
//! Prints only what does not depend on the schedule.
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

fn main() {
    let (tx, rx) = mpsc::channel();
    let taken = Arc::new(Mutex::new(0u64));
    let barrier = Arc::new(Barrier::new(4));
    let mut handles = Vec::new();
    for id in 0..4u64 {
        let (tx, taken, barrier) = (tx.clone(), Arc::clone(&taken), Arc::clone(&barrier));
        handles.push(thread::spawn(move || {
            let mut sum = 0u64;
            for i in 0..200_000u64 {
                sum = sum.wrapping_add(i * (id + 1));
                if i % 10_000 == 0 {
                    *taken.lock().unwrap() += 1;
                }
            }
            barrier.wait();
            tx.send((id, sum)).unwrap();
            id * 10
        }));
    }
    drop(tx);
    let mut got: Vec<(u64, u64)> = rx.iter().collect();
    got.sort();
    let joined: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    for (id, sum) in &got {
        println!("thread {id}: sum {sum}");
    }
    let mut words = vec![0u64; 8];
    thread::scope(|s| {
        for (i, w) in words.iter_mut().enumerate() {
            s.spawn(move || *w = (i as u64 + 1) * 111);
        }
    });
    println!("joined {joined}, lock taken {} times, scoped {:?}", *taken.lock().unwrap(), words);
}
