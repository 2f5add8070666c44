//! `nvidia-smi topo -m` matrices (`tests/fixtures/topo/`, see its README) read into links, and
//! malformed ones refused.

#![allow(clippy::disallowed_methods)] // tests read fixtures; the no-I/O rule is for the library

use autogit_core::topology::{Link, best_set, parse_topo};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/topo")
            .join(name),
    )
    .unwrap()
}

#[test]
fn two_nvlink_pairs() {
    let t = parse_topo(&fixture("two-nvlink-pairs.txt")).unwrap();
    assert_eq!(t.links.len(), 6);
    assert_eq!(t.link(0, 1), Some(Link::NvLink(4)));
    assert_eq!(t.link(3, 2), Some(Link::NvLink(4)));
    assert_eq!(t.link(1, 2), Some(Link::Sys));
    // A 2-GPU job gets a bridged pair, whatever else is free.
    assert_eq!(best_set(&[1, 2, 3], 2, &t, |_| 0), Some(vec![2, 3]));
}

#[test]
fn pcie_switches_and_a_nic_column() {
    let t = parse_topo(&fixture("pcie-with-nic.txt")).unwrap();
    assert_eq!(t.links.len(), 6, "NIC links are not GPU links: {t:?}");
    assert_eq!(t.link(0, 1), Some(Link::Pix));
    assert_eq!(t.link(2, 3), Some(Link::Pix));
    assert_eq!(t.link(0, 3), Some(Link::Node));
    assert_eq!(best_set(&[0, 2, 3], 2, &t, |_| 0), Some(vec![2, 3]));
}

#[test]
fn one_gpu_has_no_links() {
    let t = parse_topo(&fixture("single-gpu.txt")).unwrap();
    assert!(t.links.is_empty());
}

#[test]
fn malformed_matrices_are_refused() {
    for (text, says) in [
        ("", "no GPU columns"),
        ("No devices were found\n", "no GPU columns"),
        (
            "\tGPU0\tGPU1\nGPU0\t X \tNVX\nGPU1\tNVX\t X \n",
            "unknown link `NVX`",
        ),
        (
            "\tGPU0\tGPU1\nGPU0\t X \tNV2\nGPU1\tPIX\t X \n",
            "both NV2 and PIX",
        ),
        ("\tGPU0\tGPU1\nGPU0\tPIX\t X \n", "`X` in column GPU1"),
        ("\tGPU0\tGPU1\n", "no GPU rows"),
    ] {
        let e = parse_topo(text).unwrap_err();
        assert!(e.contains(says), "{text:?}: {e}");
    }
}

use autogit_core::topology::Topology;
use proptest::prelude::*;

fn all_subsets(n: u32, k: usize) -> Vec<Vec<u32>> {
    (0u32..(1 << n))
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
        .collect()
}

proptest! {
    /// The chosen set is the best by links (slowest link, then all links) of every set of
    /// that size, compared exhaustively; more NVLinks never lose to fewer or to PCIe.
    #[test]
    fn the_chosen_set_has_the_best_links(
        n in 2u32..7,
        cells in prop::collection::vec(
            prop::sample::select(vec![
                Link::NvLink(1), Link::NvLink(4), Link::NvLink(12),
                Link::Pix, Link::Pxb, Link::Phb, Link::Node, Link::Sys,
            ]),
            21,
        ),
        k in 1usize..7,
    ) {
        let k = k.min(n as usize);
        let mut t = Topology::default();
        let mut c = cells.into_iter();
        for a in 0..n {
            for b in a + 1..n {
                t.links.insert((a, b), c.next().unwrap());
            }
        }
        let all: Vec<u32> = (0..n).collect();
        let chosen = best_set(&all, k, &t, |_| 0).unwrap();
        prop_assert_eq!(chosen.len(), k);
        let best = all_subsets(n, k).into_iter().map(|s| t.score(&s)).min().unwrap();
        prop_assert_eq!(t.score(&chosen), best);
    }
}
