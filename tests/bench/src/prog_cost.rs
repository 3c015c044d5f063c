//! Section "xdp program cost": what each AF_XDP steering program costs per
//! frame, by `BPF_PROG_TEST_RUN` on a 64-byte UDP frame arriving on queue 0
//! of a veth the bench made, beside libxdp's two programs and an
//! `XDP_PASS` floor loaded and run the same way in the same run.
//!
//! - **miss**: the XSKMAP is empty; every program must pass the frame on.
//! - **hit**: a real AF_XDP socket is bound to the queue and registered in
//!   each program's own map; every program must answer `XDP_REDIRECT`
//!   (non-live test runs stop there, so the socket copy common to all
//!   programs is not in the figure).

use crate::{
    table::{median, Row},
    testrun::{load_return_program, test_run, TestRun, XdpAction},
    Settings,
};
use afxdp_program::XSKS_MAP_NAME;
use afxdp_testnet::{frame::udp_frame, Netns, VethOptions, VethPair};
use afxdp_xsk::{XskConfig, XskSocket};
use anyhow::{bail, Context, Result};
use aya::{
    maps::Map,
    programs::{Program, Xdp},
    Ebpf, EbpfLoader,
};
use nix::net::if_::if_nametoindex;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const SECTION: &str = "xdp program cost";

/// Where Debian's `libxdp1` puts the programs libxdp loads for AF_XDP.
const LIBXDP_BPF_DIR: &str = "/usr/lib/x86_64-linux-gnu/bpf";
/// libxdp's programs, named by what they do on a miss.
/// `xsk_def_xdp_prog` redirects with a default action;
/// `xsk_def_xdp_prog_5.3` looks the queue up first and redirects on a hit.
const LIBXDP_PROGRAMS: [(&str, &str); 2] = [
    ("libxdp xsk_def_prog", "xsk_def_xdp_prog.o"),
    ("libxdp xsk_def_prog_5.3", "xsk_def_xdp_prog_5.3.o"),
];

/// A loaded program and, for the steering ones, the object owning its XSKMAP.
struct Candidate {
    name: String,
    prog: OwnedFd,
    /// The loaded object (keeps the map); `None` for the floor.
    ebpf: Option<Ebpf>,
}

impl Candidate {
    fn from_object(name: &str, object: &[u8]) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(object)
            .with_context(|| format!("loading {name}"))?;
        let (_, program) = ebpf
            .programs_mut()
            .find(|(_, p)| matches!(p, Program::Xdp(_)))
            .with_context(|| format!("{name}: no XDP program"))?;
        let xdp: &mut Xdp = program.try_into()?;
        xdp.load().with_context(|| format!("verifier on {name}"))?;
        let prog = xdp.fd()?.as_fd().try_clone_to_owned()?;
        Ok(Candidate {
            name: name.to_string(),
            prog,
            ebpf: Some(ebpf),
        })
    }

    fn floor() -> Result<Self> {
        Ok(Candidate {
            name: "floor XDP_PASS".to_string(),
            prog: load_return_program("bench_pass", XdpAction::Pass)?,
            ebpf: None,
        })
    }

    fn xsks_map(&self) -> Option<BorrowedFd<'_>> {
        match self.ebpf.as_ref()?.map(XSKS_MAP_NAME)? {
            Map::XskMap(data) => Some(data.fd().as_fd()),
            _ => None,
        }
    }
}

/// The candidates in table order: floor, ours, libxdp's.
fn candidates() -> Result<Vec<Candidate>> {
    let mut all = vec![
        Candidate::floor()?,
        Candidate::from_object("ours xsk_redirect", afxdp_program::builtin_object())?,
    ];
    for (name, file) in LIBXDP_PROGRAMS {
        let path = format!("{LIBXDP_BPF_DIR}/{file}");
        let object = std::fs::read(&path).with_context(|| {
            format!("{path} (Debian package libxdp1, installed by tests/install.sh)")
        })?;
        all.push(Candidate::from_object(name, &object)?);
    }
    Ok(all)
}

/// Runs the section: a netns with one veth, then miss and hit rows.
pub fn run(settings: &Settings) -> Result<Vec<Row>> {
    let ns = Netns::new("afxb-cost")?;
    let veth = VethPair::create(
        VethOptions::new("afxbc0", "afxbc1")
            .a_netns(&ns)
            .b_netns(&ns)
            .queues(1),
    )?;
    ns.ip(&["link", "set", veth.a(), "up"])?;
    ns.ip(&["link", "set", veth.b(), "up"])?;
    let ifname = veth.a().to_string();
    let rows = ns.run(|| measure_in_netns(&ifname, settings))??;
    drop(veth);
    Ok(rows)
}

fn measure_in_netns(ifname: &str, settings: &Settings) -> Result<Vec<Row>> {
    let ifindex = if_nametoindex(ifname).with_context(|| format!("if_nametoindex({ifname})"))?;
    let all = candidates()?;
    let frame = udp_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 9001);
    let run = TestRun {
        frame: &frame,
        ifindex,
        rx_queue: 0,
        repeat: settings.test_run_repeat,
        flags: 0,
        batch_size: 0,
    };
    let miss = measure_case(&all, &run, settings.runs, XdpAction::Pass)?;
    let socket = XskSocket::new(ifindex, 0, &XskConfig::default())?;
    for c in all.iter() {
        if let Some(map) = c.xsks_map() {
            socket.register(map, 0)?;
        }
    }
    let hit = measure_case(&all, &run, settings.runs, XdpAction::Redirect)?;
    let mut rows = case_rows("miss", &all, &miss, true);
    rows.extend(case_rows("hit", &all, &hit, false));
    Ok(rows)
}

/// Median ns per frame of each candidate, rounds interleaved so drift hits
/// all alike. The floor is checked against `XDP_PASS`, the others against
/// `expect`.
fn measure_case(
    all: &[Candidate],
    run: &TestRun<'_>,
    runs: usize,
    expect: XdpAction,
) -> Result<Vec<Cell>> {
    let mut samples = vec![Vec::with_capacity(runs); all.len()];
    for _ in 0..runs {
        for (c, s) in all.iter().zip(samples.iter_mut()) {
            let r =
                test_run(c.prog.as_fd(), run).with_context(|| format!("test run of {}", c.name))?;
            let want = if c.ebpf.is_none() {
                XdpAction::Pass
            } else {
                expect
            };
            if r.retval != want as u32 {
                bail!(
                    "{} returned action {} where {want:?} was expected",
                    c.name,
                    r.retval
                );
            }
            s.push(r.wall_ns_per_run);
        }
    }
    Ok(samples.iter_mut().map(|s| Cell::of(s)).collect())
}

/// A candidate's figure in one case: median and half the run-to-run range.
#[derive(Debug, Clone, Copy)]
struct Cell {
    median: f64,
    noise: f64,
}

impl Cell {
    fn of(samples: &mut [f64]) -> Self {
        let median = median(samples);
        let lo = samples.first().copied().unwrap_or(0.0);
        let hi = samples.last().copied().unwrap_or(0.0);
        Cell {
            median,
            noise: (hi - lo) / 2.0,
        }
    }
}

/// `value ≤ bound`, or within the measurement's noise of it.
fn verdict(value: f64, bound: f64, noise: f64) -> (bool, &'static str) {
    if value <= bound {
        (true, "")
    } else if value - bound <= noise {
        (true, " (within run-to-run noise)")
    } else {
        (false, "")
    }
}

/// Rows of one case; ours is held to ≤ libxdp's best and, on a miss, to
/// ≤ floor + 2 ns, each within the run-to-run noise of the two figures.
fn case_rows(case: &str, all: &[Candidate], cells: &[Cell], miss: bool) -> Vec<Row> {
    let rows: Vec<Row> = all
        .iter()
        .zip(cells)
        .map(|(c, cell)| {
            Row::new(
                SECTION,
                format!("{case}: {}", c.name),
                cell.median,
                "ns/frame",
            )
            .note(format!("±{:.1} ns over the runs", cell.noise))
        })
        .collect();
    let best = (2..rows.len())
        .min_by(|&a, &b| rows[a].value.total_cmp(&rows[b].value))
        .unwrap_or(0);
    let (ours, ours_cell) = (&rows[1], cells[1]);
    let noise = ours_cell.noise.max(cells[best].noise);
    let (met, how) = verdict(ours.value, rows[best].value, noise);
    let mut ours_row = ours
        .clone()
        .versus(&rows[best])
        .target(format!("≤ libxdp's best{how}"), met);
    if miss {
        let floor_noise = ours_cell.noise.max(cells[0].noise);
        let over = ours.value - rows[0].value;
        let (met, how) = verdict(over, 2.0, floor_noise);
        let word = if met { "met" } else { "MISSED" };
        ours_row = ours_row.note(format!(
            "floor + {over:.1} ns, ±{floor_noise:.1}: {word} ≤ floor + 2 ns{how}"
        ));
    }
    let mut out = vec![rows[0].clone(), ours_row];
    out.extend(rows[2..].iter().map(|r| r.clone().versus(&rows[0])));
    out
}
