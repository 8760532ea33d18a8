//! Plan files from hostile or damaged sources: `read_plan_bytes` must reject them with an error,
//! never panic or allocate from an unchecked length, and whatever it accepts must run in the
//! reference executor without panicking.

use heq_runtime::error::{ExecError, PlanError};
use heq_runtime::plan::{
    PLAN_FORMAT_VERSION, Plan, read_plan, read_plan_bytes, write_plan, write_plan_bytes,
};
use heq_runtime::reference::testutil::{every_op_plan, every_step_epilogue};
use heq_runtime::reference::{self, epilogue};

const HEADER_LEN: usize = 8 + 4 + 32;

/// `every_op_plan` with an epilogue of every step, so that mutations reach its encoding too.
fn sample_plan() -> Plan {
    let mut plan = every_op_plan();
    plan.public.epilogue = every_step_epilogue();
    plan
}

fn sample_bytes() -> Vec<u8> {
    write_plan_bytes(&sample_plan()).expect("encodes")
}

/// A plan file around `body` with a correct hash.
fn with_hash(body: &[u8]) -> Vec<u8> {
    let mut out = sample_bytes()[..12].to_vec();
    out.extend_from_slice(blake3::hash(body).as_bytes());
    out.extend_from_slice(body);
    out
}

/// Outcome of reading a (possibly mutated) file; an accepted plan is also run.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    not_a_plan: usize,
    version: usize,
    corrupt: usize,
    invalid: usize,
}

impl Tally {
    fn read(&mut self, bytes: &[u8]) {
        match read_plan_bytes(bytes) {
            Ok(plan) => {
                self.accepted += 1;
                run_everywhere(&plan);
            }
            Err(PlanError::NotAPlan) => self.not_a_plan += 1,
            Err(PlanError::Version { .. }) => self.version += 1,
            Err(PlanError::Corrupt(_)) => self.corrupt += 1,
            Err(PlanError::Invalid(errs)) => {
                assert!(!errs.is_empty());
                self.invalid += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// Runs an accepted plan, and its epilogue, on the zero input and on both ends of the input
/// range: any executor error is fine (a mutated range or weight may well break the range
/// analysis), a panic is not; the epilogue of a validated plan always runs.
fn run_everywhere(plan: &Plan) {
    let t = &plan.public.tensors[plan.public.input.tensor.0 as usize];
    assert!(
        t.len() <= 1 << 16,
        "a single-byte mutation made a {}-element input",
        t.len()
    );
    for v in [0, t.range.0, t.range.1] {
        match reference::run(plan, &vec![v; t.len()]) {
            Ok(y) => {
                assert_eq!(
                    y.len(),
                    plan.public.tensors[plan.public.output.tensor.0 as usize].len()
                );
                if let Err(e) = epilogue::finish(&plan.public, &y) {
                    panic!("the epilogue of a validated plan failed: {e}");
                }
            }
            Err(ExecError::Plan(e)) => panic!("validated plan rejected by the executor: {e}"),
            Err(_) => {}
        }
    }
}

#[test]
fn round_trip() {
    let plan = sample_plan();
    assert_eq!(
        read_plan_bytes(&write_plan_bytes(&plan).unwrap()).unwrap(),
        plan
    );
    let client = plan.to_client();
    assert_eq!(
        read_plan_bytes(&write_plan_bytes(&client).unwrap()).unwrap(),
        client
    );
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = sample_bytes();
    let mut tally = Tally::default();
    for len in 0..bytes.len() {
        tally.read(&bytes[..len]);
    }
    assert_eq!(tally.not_a_plan, HEADER_LEN);
    assert_eq!(tally.corrupt, bytes.len() - HEADER_LEN);
    assert_eq!(tally.accepted + tally.version + tally.invalid, 0);
}

#[test]
fn every_byte_flip_is_rejected() {
    let bytes = sample_bytes();
    let mut tally = Tally::default();
    for pos in 0..bytes.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[pos] ^= mask;
            tally.read(&b);
        }
    }
    assert_eq!(tally.not_a_plan, 8 * 3);
    assert_eq!(tally.version, 4 * 3);
    assert_eq!(tally.corrupt, (bytes.len() - 12) * 3);
    assert_eq!(tally.accepted + tally.invalid, 0);
}

#[test]
fn plans_of_the_previous_format_are_refused() {
    // Every version is refused but the current one (version 7 had no coefficient encodings,
    // version 6 no faithful truncation and no chunk bound, version 5 no carry depths, version 4 no OT batch size, version 3 no tie
    // windows): a reader of another version would misread the body or its semantics.
    let mut b = sample_bytes();
    b[8..12].copy_from_slice(&(PLAN_FORMAT_VERSION - 1).to_le_bytes());
    assert!(matches!(
        read_plan_bytes(&b),
        Err(PlanError::Version {
            found: 7,
            expected: 8
        })
    ));
}

#[test]
fn wrong_version_names_both() {
    let mut b = sample_bytes();
    b[8..12].copy_from_slice(&9u32.to_le_bytes());
    let err = read_plan_bytes(&b).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "plan format version 9 is not supported (this heq-run reads version {PLAN_FORMAT_VERSION})"
        )
    );
}

#[test]
fn body_mutations_with_recomputed_hash_never_panic() {
    let body = sample_bytes()[HEADER_LEN..].to_vec();
    let mut tally = Tally::default();
    for pos in 0..body.len() {
        let edits: [&dyn Fn(u8) -> u8; 7] = [
            &|x| x ^ 0x01,
            &|x| x ^ 0x40,
            &|x| x ^ 0x80,
            &|_| 0x00,
            &|_| 0xff,
            &|x| x.wrapping_add(1),
            &|x| x.wrapping_sub(1),
        ];
        for edit in edits {
            let mut b = body.clone();
            b[pos] = edit(b[pos]);
            tally.read(&with_hash(&b));
        }
        for insert in [0x00, 0x7f, 0xff] {
            let mut b = body.clone();
            b.insert(pos, insert);
            tally.read(&with_hash(&b));
        }
        let mut b = body.clone();
        b.remove(pos);
        tally.read(&with_hash(&b));
    }
    println!("{tally:?}");
    // The decoder and validate() both see real work: some mutants decode but break a rule,
    // some do not decode, and some (a changed weight or range) are still valid plans.
    assert!(
        tally.corrupt > 0 && tally.invalid > 0 && tally.accepted > 0,
        "{tally:?}"
    );
    assert_eq!(tally.not_a_plan + tally.version, 0);
}

#[test]
fn random_multi_byte_mutations_never_panic() {
    let body = sample_bytes()[HEADER_LEN..].to_vec();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut tally = Tally::default();
    for _ in 0..3000 {
        let mut b = body.clone();
        for _ in 0..1 + next() % 4 {
            let pos = (next() % b.len() as u64) as usize;
            match next() % 3 {
                0 => b[pos] = next() as u8,
                1 => b.insert(pos, next() as u8),
                _ => {
                    b.remove(pos);
                }
            }
        }
        tally.read(&with_hash(&b));
    }
    println!("{tally:?}");
    assert_eq!(tally.accepted + tally.corrupt + tally.invalid, 3000);
}

#[test]
fn huge_length_prefixes_do_not_allocate() {
    // The model name is the first field: a length of 2^63 must fail on the missing bytes, not
    // reserve them.
    let mut body = vec![0xff; 9];
    body.push(0x7f);
    let err = read_plan_bytes(&with_hash(&body)).unwrap_err();
    assert!(matches!(err, PlanError::Corrupt(_)), "{err}");
}

#[test]
fn file_round_trip_and_io_errors() {
    let dir = std::env::temp_dir().join(format!("heq-plan-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plan.bin");
    write_plan(&every_op_plan(), &path).unwrap();
    assert_eq!(read_plan(&path).unwrap(), every_op_plan());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec!["plan.bin"]);
    let missing = dir.join("missing.bin");
    let err = read_plan(&missing).unwrap_err();
    // The caller names the file (the CLIs: "reading plan PATH: ..."), the error says why.
    assert!(
        matches!(&err, PlanError::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    assert!(!err.to_string().contains("missing.bin"), "{err}");
    std::fs::write(&path, b"not a plan").unwrap();
    assert!(matches!(read_plan(&path), Err(PlanError::NotAPlan)));
    std::fs::remove_dir_all(&dir).unwrap();
}
