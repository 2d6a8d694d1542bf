"""Training, one idea per module, composed by `step` (spec §4):

* `runtime`: torch threads, determinism, device synchronisation for the step's timings;
* `inputs`: the step's images on the device (decoded bytes or raw tensors), checked;
* `unlabeled`: the teacher's pseudo-labels and the unlabeled re-crop, mix and photometric ops;
* `forward`: the student's forwards and the tensors a loss term reads;
* `optimisation`: two SGD optimisers, AMP, the grad scaler, clipping;
* `parallel`: DistributedDataParallel over the student's pass, synchronised BatchNorm (world > 1);
* `trainer`: what configure builds (model, optimisation, loss graph, the loss's generator);
* `step`: one training step, executing the driver's plan.
"""
