"""Running the round's heavy stages past one process, on existing engines. Kedro-free.

- ``ray_engine``: scoring (``score_on_ray``) and the final generation (``generate_on_ray``,
  ``evaluate_generation_on_ray``) as Ray Data ``map_batches`` over an actor pool, one model replica per
  worker, each batch going through the same core function as the local backend.
- ``launch``: LoRA training under ``torchrun`` or ``accelerate launch`` (``train_launched``); the launched
  processes run ``train_entry``, which calls ``training.train_round`` under DDP.

Ray is an optional extra (``pip install -e ".[ray]"``); nothing here imports it until it is used.
"""
