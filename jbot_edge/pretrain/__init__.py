"""jBOT self-distillation pre-training (``jbot-edge pretrain``).

Modules: :mod:`augmentations` (batched jet augmentations, shared with the JetCLR baseline), :mod:`masking`
(pT-fraction particle masking), :mod:`loss` (DINO [CLS], iBOT particle and KoLeo losses), :mod:`meta_arch`
(student/teacher wiring), :mod:`stream` (resumable, shardable HDF5 streaming), :mod:`train` (the trainer),
:mod:`checkpoint` (atomic, resumable checkpoints), :mod:`artifact` (the ``teacher.pt`` contract),
:mod:`distributed` (torchrun/DDP helpers).
"""
