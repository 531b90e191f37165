//! The learned ranker on a simulated shop with a known click model (users prefer the
//! categories they clicked recently, with position bias): trained on the fixed blend's
//! logged lists, it ranks held-out impressions better than the blend served them.

use recd_core::features::FeatureSet;
use recd_train::ctr::export::export;
use recd_train::ctr::fit::FitParams;
use recd_train::ctr::sim::{SimParams, catalog, simulate};
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
