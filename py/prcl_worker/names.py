"""The names a loss spec can reference; the trainer fills them every step, hello advertises them."""

MODEL_OUTPUTS = ("logits_l", "logits_u", "rep", "var", "logits_all")
BATCH_TENSORS = ("y_l", "pseudo", "conf", "feat_label", "feat_mask", "feat_prob")
# What a labeled-only step computes: a loss reading nothing else needs no unlabeled batch.
LABELED_ONLY = ("model.logits_l", "batch.y_l")
