//! [`Line`]: an ordered set of waiting members that answers "how many wait ahead of this
//! one" in O(log n).
//!
//! A poll asks that question thousands of times a second of a line that may hold tens of
//! thousands; counting by walking the line would cost each poll the length of the line. So
//! every member ever placed gets a slot in a dense, sorted index, and a Fenwick tree over the
//! slots counts the members still present in any prefix. Removal leaves a hole (O(log n));
//! joins arrive in order and append (O(log n)). A member placed between existing slots (two
//! joins arriving out of order) and a line that is mostly holes are re-indexed, in O(n).

/// A place in the line: join order first; the member id orders equal join orders.
pub(crate) type Place = (i64, u64);

#[derive(Debug, Default)]
pub(crate) struct Line {
    /// Every slot, sorted; a slot whose `present` is false is a hole.
    slots: Vec<Place>,
    present: Vec<bool>,
    /// Fenwick tree over `present`, 1-based: `tree[i]` counts the present slots in
    /// `(i - lowbit(i), i]`. `tree[0]` is unused.
    tree: Vec<u32>,
    len: usize,
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Line {
    /// A line of `places`, in any order.
    pub(crate) fn from_places(mut places: Vec<Place>) -> Self {
        places.sort_unstable();
        places.dedup();
        let mut tree = vec![1u32; places.len() + 1];
        tree[0] = 0;
        // The O(n) construction: each node passes its count up to its parent.
        for i in 1..tree.len() {
            let parent = i + lowbit(i);
            if parent < tree.len() {
                tree[parent] += tree[i];
            }
        }
        Self {
            len: places.len(),
            present: vec![true; places.len()],
            slots: places,
            tree,
        }
    }

    /// Members in the line.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Present slots among the first `count` slots.
    fn prefix(&self, mut count: usize) -> usize {
        let mut sum = 0;
        while count > 0 {
            sum += self.tree[count] as usize;
            count -= lowbit(count);
        }
        sum
    }

    fn update(&mut self, slot: usize, delta: i32) {
        let mut i = slot + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += lowbit(i);
        }
    }

    /// Members ahead of `place`, if it is in the line.
    pub(crate) fn ahead(&self, place: Place) -> Option<usize> {
        let slot = self.slots.binary_search(&place).ok()?;
        self.present[slot].then(|| self.prefix(slot))
    }

    pub(crate) fn insert(&mut self, place: Place) {
        match self.slots.binary_search(&place) {
            Ok(slot) => {
                if !self.present[slot] {
                    self.present[slot] = true;
                    self.update(slot, 1);
                    self.len += 1;
                }
            }
            Err(slot) if slot == self.slots.len() => {
                // A new last node covers `(i - lowbit(i), i]`: the new slot plus the present
                // slots before it in that range.
                let i = slot + 1;
                let covered = self.prefix(i - 1) - self.prefix(i - lowbit(i));
                self.slots.push(place);
                self.present.push(true);
                self.tree
                    .push(u32::try_from(covered + 1).unwrap_or(u32::MAX));
                self.len += 1;
            }
            Err(_) => {
                let mut places = self.places();
                places.push(place);
                *self = Self::from_places(places);
            }
        }
    }

    pub(crate) fn remove(&mut self, place: Place) {
        let Ok(slot) = self.slots.binary_search(&place) else {
            return;
        };
        if !self.present[slot] {
            return;
        }
        self.present[slot] = false;
        self.update(slot, -1);
        self.len -= 1;
        // Admission empties the line from the front; without re-indexing, a long opening
        // would keep a slot for everyone who ever waited.
        let holes = self.slots.len() - self.len;
        if holes > 1024 && holes > self.len {
            *self = Self::from_places(self.places());
        }
    }

    fn places(&self) -> Vec<Place> {
        self.slots
            .iter()
            .zip(&self.present)
            .filter(|(_, present)| **present)
            .map(|(place, _)| *place)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_matches(line: &Line, model: &[Place]) {
        let mut model = model.to_vec();
        model.sort_unstable();
        assert_eq!(line.len(), model.len());
        for (ahead, place) in model.iter().enumerate() {
            assert_eq!(line.ahead(*place), Some(ahead), "{place:?}");
        }
    }

    /// The Fenwick tree against counting by hand, through appends, holes, out-of-order
    /// inserts, re-insertions and re-indexing.
    #[test]
    fn ahead_counts_the_present_places_before_a_place() {
        let mut line = Line::from_places(vec![(5, 1), (1, 2), (3, 3), (1, 2)]);
        let mut model: Vec<Place> = vec![(1, 2), (3, 3), (5, 1)];
        assert_matches(&line, &model);
        for seq in 6..3000 {
            line.insert((seq, seq as u64));
            model.push((seq, seq as u64));
            if seq % 500 == 0 {
                assert_matches(&line, &model);
            }
        }
        line.insert((2, 9)); // out of order: re-indexed
        line.insert((3, 3)); // already there
        model.push((2, 9));
        assert_matches(&line, &model);
        for seq in 6..2500 {
            if seq % 7 != 0 {
                line.remove((seq, seq as u64));
                model.retain(|p| *p != (seq, seq as u64));
            }
            if seq % 500 == 0 {
                assert_matches(&line, &model);
            }
        }
        // More holes than members by now: re-indexed.
        assert!(line.slots.len() < 2000, "{} slots", line.slots.len());
        line.insert((10, 10)); // between slots again
        line.insert((4000, 1)); // appended
        model.extend([(10, 10), (4000, 1)]);
        assert_matches(&line, &model);
        assert_eq!(line.ahead((4, 4)), None);
        line.remove((4, 4)); // not there: nothing changes
        assert_matches(&line, &model);
    }
}
