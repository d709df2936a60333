//! ANIL (Raghu et al. 2020; SPEC §6.3): as ITD-BiO — head adapted, hypergradient through the
//! whole adaptation — and the head's initialisation is meta-learned too: its gradient is the
//! sum over tasks of `Ā_0`, the adjoint of the initial head at the end of SPEC §6.4's recursion,
//! stepped by its own Adam.

use crate::meta::itd_bio::{head_only_meta_gradient, HeadOnly};
use crate::meta::learner::{Learner, TaskBatch};
use crate::meta::ops::MetaBackend;

pub(crate) fn meta_gradient<B: MetaBackend>(be: &B, l: &mut Learner<B>, batch: &TaskBatch<B>) {
    head_only_meta_gradient(be, l, batch, HeadOnly { through_adaptation: true, random_init: false, learn_init: true });
}
