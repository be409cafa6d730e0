//! Rows cut into multi-row INSERTs of few distinct sizes.
//!
//! sqlx keeps each statement it prepares on a connection, up to the cache's capacity (256),
//! and a multi-row INSERT is a different statement for every number of rows. One of
//! `message` costs about 13 KB of SQLite's memory plus 2 KB a row (`.stats` of the sqlite3
//! shell), a campaign's staging insert 2.4 MB for 3,999 rows. Cut at whatever size a batch
//! had, the writer kept one statement for every size it ever saw: 60 campaigns of different
//! sizes took Herald from 28 to 219 MB (BENCHMARKS.md, "Memory over a soak"). Cut into
//! powers of two, a kind of INSERT has at most `log2(most) + 1` statements.

/// `rows` in pieces of `most` rows, then what is left in decreasing powers of two (13 rows:
/// 8, 4, 1). `most` should be a power of two itself.
pub(super) fn pieces<T>(rows: &[T], most: usize) -> impl Iterator<Item = &[T]> {
    let most = most.max(1);
    let mut rest = rows;
    std::iter::from_fn(move || {
        let len = rest.len();
        let take = if len >= most {
            most
        } else {
            1 << len.checked_ilog2()?
        };
        let (piece, tail) = rest.split_at_checked(take)?;
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::pieces;
    use std::collections::BTreeSet;

    #[test]
    fn every_row_once_in_order_in_few_sizes() {
        let sizes = |n: usize, most: usize| -> Vec<usize> {
            let rows: Vec<usize> = (0..n).collect();
            let cut: Vec<&[usize]> = pieces(&rows, most).collect();
            assert_eq!(cut.concat(), rows, "{n} rows by {most}");
            cut.iter().map(|p| p.len()).collect()
        };
        assert_eq!(sizes(0, 8), Vec::<usize>::new());
        assert_eq!(sizes(13, 8), [8, 4, 1]);
        assert_eq!(sizes(1000, 256), [256, 256, 256, 128, 64, 32, 8]);
        assert_eq!(sizes(5, 0), [1, 1, 1, 1, 1]);
        let seen: BTreeSet<usize> = (0..3000).flat_map(|n| sizes(n, 1024)).collect();
        assert_eq!(seen.len(), 11, "1, 2, 4 … 1024: {seen:?}");
    }
}
