//! cryprot-ot backends over loopback QUIC: the pads are correct random OTs in both directions,
//! and the OT-extension traffic (measured with cryprot-net's communication metrics) equals
//! `cost::ot_extension::ot_extension_bytes`.

use cryprot_net::metrics::new_comm_layer;
use cryprot_net::testing::local_conn;
use heq_runtime::cost::ot_extension::ot_extension_bytes;
use heq_runtime::ot::cryprot::CryprotOt;
use heq_runtime::ot::{OtPads, OtSource, Side};
use heq_runtime::plan::OtBackend;
use tracing::{Instrument, Level};
use tracing_subscriber::layer::SubscriberExt;

fn check_pads(sender: &mut OtPads, receiver: &mut OtPads, n: usize) {
    let sent = sender.take_send(n).expect("sender pads").to_vec();
    let (choices, got) = receiver.take_recv(n).expect("receiver pads");
    let ones = choices.iter().filter(|&&c| c).count();
    assert!(
        n < 1000 || (ones > n / 3 && ones < 2 * n / 3),
        "choices look random"
    );
    for i in 0..n {
        assert_eq!(got[i], sent[i][usize::from(choices[i])], "OT {i}");
        assert_ne!(sent[i][0], sent[i][1]);
    }
}

#[tokio::test]
async fn backends_produce_random_ots_and_measured_bytes_match() -> anyhow::Result<()> {
    // cryprot-ot's PPRF receiver blocks a rayon worker while waiting; with both parties in one
    // process a 2-thread pool could starve.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build_global();
    let (layer, data) = new_comm_layer();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    for backend in [OtBackend::Silent, OtBackend::Iknp] {
        let (mut sc, mut cc) = local_conn().await?;
        let mut server = CryprotOt::new(backend, Side::Server, &mut sc);
        let mut client = CryprotOt::new(backend, Side::Client, &mut cc);
        for (round, (n_s2c, n_c2s)) in [(5000usize, 3000usize), (70_000, 1), (300_000, 0)]
            .into_iter()
            .enumerate()
        {
            data.reset();
            let s_span =
                tracing::span!(target: "cryprot_metrics", Level::TRACE, "server", phase = "server");
            let c_span =
                tracing::span!(target: "cryprot_metrics", Level::TRACE, "client", phase = "client");
            let (mut sp, mut cp) = tokio::try_join!(
                server.pads(n_s2c, n_c2s).instrument(s_span),
                client.pads(n_c2s, n_s2c).instrument(c_span)
            )?;
            check_pads(&mut sp, &mut cp, n_s2c);
            check_pads(&mut cp, &mut sp, n_c2s);
            let comm = data.comm_data();
            let written = |p: &str| {
                comm.get(p)
                    .map(|d| d.write.bytes_with_sub_comm)
                    .unwrap_or(0)
            };
            let first = round == 0;
            let (s2c_sender, s2c_receiver) = ot_extension_bytes(backend, n_s2c as u64, first);
            let (c2s_sender, c2s_receiver) = ot_extension_bytes(backend, n_c2s as u64, first);
            eprintln!(
                "{backend:?} {n_s2c}/{n_c2s}: server wrote {} (model {}), client wrote {} (model {})",
                written("server"),
                s2c_sender + c2s_receiver,
                written("client"),
                c2s_sender + s2c_receiver
            );
            assert_eq!(
                written("server"),
                s2c_sender + c2s_receiver,
                "{backend:?} server bytes"
            );
            assert_eq!(
                written("client"),
                c2s_sender + s2c_receiver,
                "{backend:?} client bytes"
            );
        }
    }
    Ok(())
}
