//! Groups records into batches within the sync's batch size and the connector's limits.
//! A batch holds one operation (the contract promises connectors so): a record of
//! another operation than the batch's completes it.

use crate::source::Record;

pub struct Batcher {
    max_records: usize,
    max_bytes: u64,
    current: Vec<Record>,
    bytes: u64,
}

impl Batcher {
    pub fn new(max_records: usize, max_bytes: u64) -> Self {
        Batcher {
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
            current: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a record; returns a batch when one is complete. A record larger than
    /// `max_bytes` on its own travels alone.
    pub fn push(&mut self, record: Record) -> Option<Vec<Record>> {
        let size = record.payload.len() as u64;
        let mut done = None;
        let other_operation = self
            .current
            .first()
            .is_some_and(|first| first.operation != record.operation);
        if !self.current.is_empty() && (self.bytes + size > self.max_bytes || other_operation) {
            done = self.take();
        }
        self.bytes += size;
        self.current.push(record);
        if self.current.len() >= self.max_records || self.bytes >= self.max_bytes {
            debug_assert!(done.is_none() || self.current.len() == 1);
            if done.is_none() {
                done = self.take();
            } else {
                // Both the previous batch and this oversized record are complete; the
                // record is returned by the next push or `finish`.
            }
        }
        done
    }

    /// The last, partial batch.
    pub fn finish(&mut self) -> Option<Vec<Record>> {
        self.take()
    }

    fn take(&mut self) -> Option<Vec<Record>> {
        if self.current.is_empty() {
            return None;
        }
        self.bytes = 0;
        Some(std::mem::take(&mut self.current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, size: usize) -> Record {
        Record::new(key.into(), "x".repeat(size))
    }

    #[test]
    fn a_batch_holds_one_operation() {
        let mut batcher = Batcher::new(10, 1_000);
        let mut delete = rec("d1", 2);
        delete.operation = crate::sandbox::Operation::Delete;
        assert!(batcher.push(rec("u1", 1)).is_none());
        let upserts = batcher
            .push(delete)
            .expect("the delete completes the upserts");
        assert_eq!(upserts.len(), 1);
        let deletes = batcher.finish().unwrap();
        assert_eq!(deletes[0].key, "d1");
    }

    fn run(batcher: &mut Batcher, records: Vec<Record>) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for r in records {
            out.extend(batcher.push(r));
        }
        out.extend(batcher.finish());
        out.into_iter()
            .map(|b| b.into_iter().map(|r| r.key).collect())
            .collect()
    }

    #[test]
    fn by_count() {
        let mut b = Batcher::new(2, 1000);
        let batches = run(&mut b, (0..5).map(|i| rec(&i.to_string(), 10)).collect());
        assert_eq!(batches, [vec!["0", "1"], vec!["2", "3"], vec!["4"]]);
    }

    #[test]
    fn by_bytes() {
        let mut b = Batcher::new(100, 25);
        let batches = run(
            &mut b,
            vec![
                rec("a", 10),
                rec("b", 10),
                rec("c", 10),
                rec("big", 99),
                rec("d", 5),
            ],
        );
        assert_eq!(batches, [vec!["a", "b"], vec!["c"], vec!["big"], vec!["d"]]);
    }
}
