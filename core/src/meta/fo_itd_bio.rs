//! FO-ITD-BiO (SPEC §6.3): ITD-BiO without differentiating through the adaptation. Each task's
//! head starts from a fresh random draw and is adapted by N steps; φ gets only the query-path
//! gradient at the adapted head (`S̄ = 0` in SPEC §6.4), plus the coupling through each task's
//! batch-norm statistics.

use crate::meta::itd_bio::{head_only_meta_gradient, HeadOnly};
use crate::meta::learner::{Learner, TaskBatch};
use crate::meta::ops::MetaBackend;

pub(crate) fn meta_gradient<B: MetaBackend>(be: &B, l: &mut Learner<B>, batch: &TaskBatch<B>) {
    head_only_meta_gradient(be, l, batch, HeadOnly { through_adaptation: false, random_init: true, learn_init: false });
}
