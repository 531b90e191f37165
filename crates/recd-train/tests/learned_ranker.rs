//! The learned ranker on a simulated shop with a known click model (users prefer the
//! categories they clicked recently, with position bias): trained on the fixed blend's
//! logged lists, it ranks held-out impressions better than the blend served them.

use recd_core::features::FeatureSet;
use recd_train::ctr::export::export;
use recd_train::ctr::fit::FitParams;
use recd_train::ctr::sim::{Policy, SimParams, catalog, run, simulate};
use recd_train::ctr::train;

#[test]
fn learned_ranker_beats_the_fixed_blend_on_held_out_impressions() {
    let sim = simulate(&SimParams::default());
    let set = FeatureSet::default_for(&sim.schema);
    let rows = export(
        &set,
        &catalog(&sim.items),
        &sim.events,
        &sim.lists,
        3_600_000,
    );
    assert_eq!(
        rows.len(),
        sim.lists.iter().map(|l| l.items.len()).sum::<usize>()
    );
    let (ranker, report) = train(&set, &rows, &FitParams::default(), 0.2, None, 0.0).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    let (learned, blend) = (report.learned, report.blend);
    assert!(
        learned.auc.unwrap() > blend.auc.unwrap() + 0.03,
        "{report:?}"
    );
    // Within a list the blend's order is the position, which clicks follow whatever the
    // items: the ranker must still order them better.
    assert!(learned.gauc.unwrap() > blend.gauc.unwrap(), "{report:?}");
    assert!(report.passed);
    // What drives clicks is found: the user's recent clicks on the item's category weigh
    // positively, and the position's weight is negative (the bias is absorbed there).
    let weight = |name: &str| {
        let i = ranker.inputs.iter().position(|i| i.name == name).unwrap();
        ranker.weights[i]
    };
    assert!(weight("user_tag_clicks_24h") > 0.1, "{:?}", ranker);
    assert!(weight("position") < -0.1, "{:?}", ranker);
}

#[test]
fn in_an_ab_test_on_simulated_users_the_learned_ranker_wins_with_significance() {
    // Trained on one shop's logged blend lists, tested on a new run of users (another
    // seed) split by the experiments' hash: half get the blend, half the ranker reading
    // online features as the server does.
    let train_sim = simulate(&SimParams::default());
    let set = FeatureSet::default_for(&train_sim.schema);
    let rows = export(
        &set,
        &catalog(&train_sim.items),
        &train_sim.events,
        &train_sim.lists,
        3_600_000,
    );
    let (ranker, _) = train(&set, &rows, &FitParams::default(), 0.2, None, 0.0).unwrap();
    let params = SimParams {
        seed: 99,
        ..SimParams::default()
    };
    let (_, outcome) = run(
        &params,
        Policy::Ab {
            set: &set,
            ranker: &ranker,
        },
    );
    let outcome = outcome.unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&outcome).unwrap());
    assert!(outcome.treatment_ctr > outcome.control_ctr, "{outcome:?}");
    assert!(outcome.p_value.unwrap() < 0.01, "{outcome:?}");
    // Both arms were served (the split is the experiments' hash, about half each).
    let share = outcome.treatment.0 as f64 / (outcome.treatment.0 + outcome.control.0) as f64;
    assert!((0.35..0.65).contains(&share), "{outcome:?}");
}
