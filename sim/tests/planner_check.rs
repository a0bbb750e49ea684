//! The planner check: random histories that leave one device's three trees
//! (remote, local, synced) differing in every way edits can make them differ
//! — edits on both sides, deletes, moves into folders deleted elsewhere,
//! swaps and cycles of renames, case-only renames, case twins, names spelled
//! in NFD and their NFC twins, file/folder type changes, a lost state
//! database — then the real planner, engine and
//! server run to a fixpoint, and the checks of the simulation hold: both
//! sides converge, nothing only one side had is lost, no partial file shows,
//! and the last pass plans nothing. proptest shrinks a failure to a minimal
//! history and records it in `planner_check.proptest-regressions`.

use ferry_sim::{Options, Scenario, UserOp, World};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    // Few paths, so that edits on both sides meet: case twins ("a"/"A"), a
    // non-ASCII name in NFC and in NFD (twins on a case-sensitive disk, one
    // name on a case-insensitive one), and a folder to move into, delete or
    // replace.
    prop::sample::select(vec![
        "a",
        "A",
        "b",
        "\u{fc}.md",
        "u\u{308}.md",
        "d",
        "D",
        "d/a",
        "d/A",
        "d/b",
        "d/d",
        "d/u\u{308}.md",
    ])
    .prop_map(String::from)
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 1..3000usize, 30_000..120_000usize]
}

fn op() -> impl Strategy<Value = UserOp> {
    prop_oneof![
        3 => (path(), size()).prop_map(|(path, size)| UserOp::Create { path, size }),
        2 => (path(), size(), any::<bool>()).prop_map(|(path, size, replace)| UserOp::Rewrite { path, size, replace }),
        1 => (path(), any::<u16>(), any::<bool>())
            .prop_map(|(path, at, append)| UserOp::Edit { path, at: usize::from(at), append }),
        2 => path().prop_map(|path| UserOp::Delete { path }),
        3 => path().prop_map(|path| UserOp::Mkdir { path }),
        3 => (path(), path()).prop_map(|(from, to)| UserOp::Move { from, to }),
        1 => (path(), path()).prop_map(|(a, b)| UserOp::Swap { a, b }),
        1 => path().prop_map(|path| UserOp::Chmod { path }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(op(), 0..14),
        prop::collection::vec(op(), 0..8),
        prop::collection::vec(op(), 0..8),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(base, there, here, lose_state, case_insensitive)| Scenario {
            base,
            there,
            here,
            lose_state,
            case_insensitive,
        })
}

fn run(sc: &Scenario) -> Result<(), String> {
    let opts = Options {
        devices: 2,
        steps: 0,
        faults: false,
        trace: false,
        case_insensitive: Some(sc.case_insensitive),
        users: Some(1),
        postgres: false,
    };
    let world = World::new(0, opts).map_err(|e| e.to_string())?;
    world.run_scenario(sc).map(|_| ()).map_err(|v| v.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn plans_converge_and_lose_nothing(sc in scenario()) {
        if let Err(v) = run(&sc) {
            prop_assert!(false, "{v}");
        }
    }
}

/// `ü.md` spelled in NFD (`u` and a combining diaeresis), as a Mac writes it.
const NFD: &str = "u\u{308}.md";

/// Histories found by hand or by earlier failures, kept as plain tests.
#[test]
fn known_histories() {
    let s = |p: &str| p.to_owned();
    let cases = [
        // Deleted there, edited here: the edit wins.
        Scenario {
            base: vec![UserOp::Create { path: s("a"), size: 10 }],
            there: vec![UserOp::Delete { path: s("a") }],
            here: vec![UserOp::Edit { path: s("a"), at: 3, append: false }],
            lose_state: false,
            case_insensitive: false,
        },
        // Edited there, deleted here: the edit comes back.
        Scenario {
            base: vec![UserOp::Create { path: s("a"), size: 10 }],
            there: vec![UserOp::Rewrite { path: s("a"), size: 40, replace: true }],
            here: vec![UserOp::Delete { path: s("a") }],
            lose_state: false,
            case_insensitive: false,
        },
        // A folder replaced by a file here while the server's copy gained a file.
        Scenario {
            base: vec![UserOp::Mkdir { path: s("d") }, UserOp::Create { path: s("d/a"), size: 10 }],
            there: vec![UserOp::Create { path: s("d/b"), size: 20 }],
            here: vec![UserOp::Delete { path: s("d") }, UserOp::Create { path: s("d"), size: 30 }],
            lose_state: false,
            case_insensitive: false,
        },
        // A case-only rename here, a new file under the old spelling there.
        Scenario {
            base: vec![UserOp::Mkdir { path: s("a") }],
            there: vec![UserOp::Create { path: s("a/b"), size: 5 }],
            here: vec![UserOp::Move { from: s("a"), to: s("A") }],
            lose_state: false,
            case_insensitive: false,
        },
        // A cycle of renames, and a move into a folder deleted there.
        Scenario {
            base: vec![
                UserOp::Create { path: s("a"), size: 1 },
                UserOp::Create { path: s("b"), size: 2 },
                UserOp::Mkdir { path: s("d") },
            ],
            there: vec![UserOp::Delete { path: s("d") }],
            here: vec![
                UserOp::Move { from: s("a"), to: s("ü.md") },
                UserOp::Move { from: s("b"), to: s("a") },
                UserOp::Move { from: s("ü.md"), to: s("b") },
                UserOp::Move { from: s("a"), to: s("d/a") },
            ],
            lose_state: false,
            case_insensitive: false,
        },
        // A name in NFD beside the same name in NFC on a Linux disk: the
        // server keeps one name; the other spelling moves aside, both sync.
        Scenario {
            here: vec![UserOp::Create { path: s("\u{fc}.md"), size: 10 }, UserOp::Create { path: s(NFD), size: 20 }],
            ..Scenario::default()
        },
        // A file in NFD here, the same name in NFC there: a conflict, both kept.
        Scenario {
            there: vec![UserOp::Create { path: s("\u{fc}.md"), size: 10 }],
            here: vec![UserOp::Create { path: s(NFD), size: 20 }],
            ..Scenario::default()
        },
        // A file synced from its NFD spelling is edited, renamed and deleted
        // elsewhere (under its NFC name): each reaches the NFD file here.
        Scenario {
            base: vec![UserOp::Create { path: s(NFD), size: 100 }],
            there: vec![UserOp::Rewrite { path: s("\u{fc}.md"), size: 50, replace: false }],
            ..Scenario::default()
        },
        Scenario {
            base: vec![UserOp::Mkdir { path: s("d") }, UserOp::Create { path: format!("d/{NFD}"), size: 100 }],
            there: vec![UserOp::Move { from: s("d/\u{fc}.md"), to: s("b") }],
            here: vec![UserOp::Edit { path: format!("d/{NFD}"), at: 3, append: true }],
            ..Scenario::default()
        },
        Scenario {
            base: vec![UserOp::Create { path: s(NFD), size: 100 }],
            there: vec![UserOp::Delete { path: s("\u{fc}.md") }],
            ..Scenario::default()
        },
        // A rebuilt state database with different content on both sides.
        Scenario {
            base: vec![UserOp::Create { path: s("a"), size: 100 }],
            there: vec![UserOp::Rewrite { path: s("a"), size: 200, replace: false }],
            here: vec![UserOp::Rewrite { path: s("a"), size: 300, replace: true }],
            lose_state: true,
            case_insensitive: false,
        },
    ];
    for (i, sc) in cases.iter().enumerate() {
        if let Err(v) = run(sc) {
            panic!("history {i}: {v}");
        }
    }
}
