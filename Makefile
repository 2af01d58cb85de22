# vgg-repro: `make install`, `make test`; main job `make table3`; `make help` lists every target.
# PRESET=proxy (default: CIFAR-10, 32 px, quick), PRESET=imagenette (ImageNet photographs at the
# paper's geometry, crop 128) or PRESET=paper (ILSVRC-2012); VGG_DATA=dataset root.
PRESET ?= proxy
DATASET ?= $(if $(filter imagenette imagewoof,$(PRESET)),$(PRESET),cifar10)
# No dataset (VGG_DATA not given, no data/$(DATASET)): the tables run as a smoke test, preset `smoke`
# on the 700 CIFAR-10 images shipped in $(SAMPLE), writing to the git-ignored results/smoke/.
SAMPLE = vgg/samples/cifar10-sample
ifeq ($(origin VGG_DATA),undefined)
ifeq ($(wildcard data/$(DATASET)/train),)
SMOKE = 1
endif
endif
VGG_DATA ?= data/$(DATASET)
export VGG_DATA PRESET
# Reuse an environment that already has the pinned torch + torchvision (constraints.txt; a 5 GB
# install); else a local .venv with exactly the pinned versions.
PYTHON ?= $(shell if [ -x .venv/bin/python ]; then echo .venv/bin/python; \
	elif python3 scripts/env_matches_lock.py 2>/dev/null; then echo python3; else echo .venv/bin/python; fi)
RUN = $(PYTHON)
comma = ,
LOADER_DATA ?= ../shared/data/imagenet-sample
IMAGENETTE ?= $(if $(wildcard data/imagenette/train),data/imagenette,../shared/data/imagenette)
# Runs at the imagewoof geometry and schedule: on Imagewoof when PRESET=imagewoof, else on Imagenette's
# copies at the imagenette_fixed preset (fixed_schedule_check, epoch_rates)
FIXED_SCHEDULE_RUN = $(if $(filter imagewoof,$(PRESET)),--preset imagewoof --data $(VGG_DATA),--preset imagenette_fixed --data $(IMAGENETTE))
# Tables 3-7 and the findings: the smoke preset on the sample when there is no dataset, in one thread
# (its nets are too small to split: with another job on the machine two threads spin waiting for each
# other, 163 s instead of 23 s measured for make table3 here).
TABLES = $(if $(SMOKE),--preset smoke --data $(SAMPLE),--preset $(PRESET))
TABLES_RUN = $(if $(SMOKE),OMP_NUM_THREADS=1 )$(RUN)
SMOKE_START = echo "no dataset (data/$(DATASET) missing, VGG_DATA not set): smoke run on the sample in $(SAMPLE)" >&2
SMOKE_END = echo "smoke run (preset smoke, $(SAMPLE); results/smoke/, figures/smoke/, ignored by git): its \
errors mean nothing. The reproduction: \`make data\` (CIFAR-10, a 170 MB download; PRESET=imagenette: Imagenette), \
then \`make $(if $(filter smoke,$@),table3,$@)\`, or \`make $(if $(filter smoke,$@),table3,$@) VGG_DATA=<ImageFolder root>\`" >&2

.DEFAULT_GOAL := help
.PHONY: help install installed test data smoke reproduce preflight table1 table2 table3 table4 table5 table6 table7 tables findings \
	seeds fixed_schedule fixed_schedule_check eval_batching init_study dense_geometry compare_presets plateau_study plateau_rules first_drop_effect schedule_study \
	finetune_study crop_study c_vs_d dense_penalty lrn_control loader_rate mixed_sizes_cost bench epoch_times epoch_rates eval_rates reproduce_time wall_time_check eval_cost profile_step fused_layers \
	gpu_subset gpu_check gpu_estimates clean

##@ Setup
help: ## this list
	@echo "usage: make <target> [PRESET=proxy|imagenette|imagewoof|paper] [VGG_DATA=<ImageFolder root>]"
	@awk 'BEGIN {FS = ":[^#]*## "} /^##@ / {printf "%s:\n", substr($$0, 5)} \
		/^[a-zA-Z0-9_]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install the package `vgg` (pip install -e .) with the pinned versions of constraints.txt
	@if [ ! -x .venv/bin/python ] && python3 scripts/env_matches_lock.py; then \
		py=python3; echo "reusing $$(python3 -c 'import sys; print(sys.prefix)') (pinned torch present)"; \
	else \
		[ -x .venv/bin/python ] || python3 -m venv .venv; py=.venv/bin/python; \
	fi; \
	isolation=$$($$py -c 'import setuptools.command.bdist_wheel' 2>/dev/null && echo --no-build-isolation); \
	$$py -m pip install -q -e . -c constraints.txt $$isolation

# Every target that runs Python needs the package installed: the scripts import vgg from it.
installed:
	@$(PYTHON) -I -c "import vgg" 2>/dev/null || \
		{ echo "error: the package vgg is not installed for $(PYTHON): run \`make install\`" >&2; exit 2; }

# Two pytest workers, each test file on one of them (its module fixtures built once): most tests wait on
# process starts and one-threaded work, so the 2 cores overlap them (9.5 min in one process, 5.5 in two).
test: installed ## the test suite (pytest, 2 workers; about 7 minutes on 2 cores)
	$(RUN) -m pytest -q -n 2 --dist loadfile tests

# The dataset as an ImageFolder tree in data/$(DATASET): CIFAR-10 (torchvision download) or
# Imagenette 2 (fast.ai's imagenette2-320, MD5-checked, resized to 224x224).
data: installed ## CIFAR-10 into data/cifar10 (DATASET=imagenette | imagewoof [ARCHIVE=<tgz>] | imagenet)
	$(RUN) scripts/make_$(DATASET).py --out data/$(DATASET) $(if $(ARCHIVE),--archive $(ARCHIVE))

smoke: installed ## Table 3 on the 700-image CIFAR-10 sample in vgg/samples (under a minute): a smoke test
	OMP_NUM_THREADS=1 $(RUN) experiments/03_table3_single_scale.py --preset smoke --data $(SAMPLE)
	@$(SMOKE_END)

##@ The paper's tables (experiments/; results/PRESET/, figures/PRESET/)
table1: installed ## Table 1: the configurations, read off the model code
	$(RUN) experiments/01_table1_configs.py
	$(RUN) experiments/01_table1_configs.py --results results/$(PRESET) --figures figures/$(PRESET)
table2: installed ## Table 2: parameters (and multiply-adds) per configuration
	$(RUN) experiments/02_table2_params.py
	$(RUN) experiments/02_table2_params.py --results results/$(PRESET) --figures figures/$(PRESET)
table3: installed ## Table 3, the main job: trains the 13 nets (init chain A -> B-E); no dataset: smoke
	@$(if $(SMOKE),$(SMOKE_START),:)
	$(TABLES_RUN) experiments/03_table3_single_scale.py $(TABLES)
	@$(if $(SMOKE),$(SMOKE_END),:)
table4: installed ## Table 4: multi-scale evaluation of Table 3's nets (trains nothing after table3)
	$(TABLES_RUN) experiments/04_table4_multi_scale.py $(TABLES)
	@$(if $(SMOKE),$(SMOKE_END),:)
table5: installed ## Table 5: dense vs multi-crop vs both, the jittered nets
	$(TABLES_RUN) experiments/05_table5_eval_methods.py $(TABLES)
	@$(if $(SMOKE),$(SMOKE_END),:)
table6: installed ## Table 6: fusion of several nets (averaged soft-max posteriors)
	$(TABLES_RUN) experiments/06_table6_fusion.py $(TABLES)
	@$(if $(SMOKE),$(SMOKE_END),:)
table7: installed ## Table 7: our best single net and fusion beside the paper's and the literature
	$(TABLES_RUN) experiments/07_table7_state_of_the_art.py $(TABLES)
	@$(if $(SMOKE),$(SMOKE_END),:)
tables: table1 table2 table3 table4 table5 table6 table7 findings ## Tables 1-7 and the findings

# The reproduction of docs/analysis_plan.md: every net of three seeds (each its own chain) with the
# plan's controls, Tables 1-7 per seed and over seeds, per-image correctness, seed-level findings.
# Resumable: run it again after a stop. PRESET=imagewoof needs `make data DATASET=imagewoof` first.
reproduce: installed ## the analysis plan's reproduction, 3 seeds (PRESET=imagewoof; SEEDS=0,1,2): resumable
	$(RUN) experiments/reproduce.py --preset $(PRESET) --data $(VGG_DATA) $(if $(SEEDS),--seeds $(SEEDS))

# The same command at the imagewoof preset on LOADER_DATA's photographs (250 by default) stored as
# Imagewoof's, in ten arbitrary groups: the code path and each step's time, never accuracy (the nets
# stay at chance). Everything goes to the git-ignored runs/preflight/; resumable like reproduce.
preflight: installed ## `make reproduce PRESET=imagewoof` end to end on 250 photographs, no accuracy (~20 min)
	$(RUN) scripts/make_preflight_data.py --src $(LOADER_DATA)/val --out runs/preflight/data
	$(RUN) experiments/reproduce.py --preset imagewoof --data runs/preflight/data --runs runs/preflight/runs \
		--results runs/preflight/results --figures runs/preflight/figures

# Which of the paper's claims Tables 3-6 reproduce (vgg/paper/findings.csv), tested paired on the
# cached posteriors (McNemar, bootstrap interval); then results/$(PRESET)/summary.md.
findings: installed ## which of the paper's claims Tables 3-6 reproduce; then results/PRESET/summary.md
	$(TABLES_RUN) experiments/findings.py $(TABLES)
	$(RUN) experiments/summary.py $(if $(SMOKE),--preset smoke,--preset $(PRESET))

##@ Studies (experiments/studies/): beyond the paper's tables

# Table 3's S=256 nets (A, A-LRN, B-E) with seeds 0, 1, 2 (each seed its own chain):
# results/$(PRESET)/seeds.csv; then the seed spread beside Table 3 and the findings again, from the
# saved per-image correctness (no checkpoint needed: seeds already saved under this protocol and the
# published seed 0 are reused, so a fresh clone trains only the missing seeds). NETS=A,A-LRN: fewer.
seeds: installed ## Table 3's S=256 nets with seeds 0-2 (SEEDS=, NETS=): the seed spread in Table 3, findings
	$(RUN) experiments/studies/seeds.py --preset $(PRESET) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(NETS),--nets $(NETS))
	$(RUN) experiments/03_table3_single_scale.py --preset $(PRESET) --seed-spread-only
	$(RUN) experiments/findings.py --preset $(PRESET) --from-saved
	$(RUN) experiments/summary.py --preset $(PRESET)

# The imagewoof preset's fixed schedule from the published Imagenette plateau-rule logs (no training).
fixed_schedule: installed ## the fixed lr schedule, derived from the published plateau-rule firings
	$(RUN) experiments/studies/fixed_schedule.py

# The fixed schedule on Imagenette (preset imagenette_fixed): Table 3's S=256 nets and the LRN control
# A-LRN0, three seeds each: seed sd against the plan's goal, the LRN control, depth pairs under dense
# and centre crops; and D and E from random init instead of net A (results/imagenette_fixed/). About
# 15 h on 2 cores; resumable. NO_TRAIN=1: score only the nets that have finished. PRESET=imagewoof:
# the plan's Sect. 6 LRN control and centre-crop pairs on the reproduction's nets (trains A-LRN0 only).
fixed_schedule_check: installed ## the fixed schedule on Imagenette: seed sd, LRN control, depth pairs (PRESET=imagewoof: plan Sect. 6)
	$(RUN) experiments/studies/fixed_schedule_check.py \
		$(FIXED_SCHEDULE_RUN) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(NETS),--nets $(NETS)) $(if $(NO_TRAIN),--no-train)

# Batched evaluation vs one image per forward on ImageNet photographs (LOADER_DATA): results/eval_batching.csv
eval_batching: installed ## batched dense / multi-crop vs one image per forward, and the evaluation loaders
	$(RUN) experiments/studies/eval_batching.py --preset imagenette --data $(LOADER_DATA)

# Nets A and D under N(0, 1e-2), Glorot, and D from a trained A (same schedule and seed).
init_study: installed ## nets A and D under N(0, 1e-2), Glorot, and D from A (INIT_EPOCHS=)
	$(RUN) experiments/studies/init_study.py --preset $(PRESET) $(if $(INIT_EPOCHS),--epochs $(INIT_EPOCHS))

# Dense evaluation vs centre crop at every test scale, beside the conv5 map size (proxy diagnostic).
dense_geometry: installed ## dense evaluation vs centre crop at every test scale, beside the conv5 map size
	$(RUN) experiments/studies/dense_geometry.py --preset $(PRESET) --unrounded

# Tables 3-6 of the imagenette and CIFAR-10 proxies beside the paper: results/presets_side_by_side.md
compare_presets: installed ## Tables 3-6 of the presets side by side: results/presets_side_by_side.md
	$(RUN) experiments/studies/compare_presets.py

# Is the plateau rule decided by one noisy epoch? Patience/threshold replayed on the logged curves.
plateau_study: installed ## is the plateau lr rule decided by one noisy epoch? (replayed on the logs)
	$(RUN) experiments/studies/plateau_study.py --preset $(PRESET)

# Which rule (patience, smoothed val accuracy) makes the first lr drop least noise-driven, at what
# cost in epochs? Simulated on the fitted curves of every logged run (seed folders included).
plateau_rules: installed ## which plateau rule makes the first lr drop least noise-driven, at what cost
	$(RUN) experiments/studies/plateau_rules.py --preset $(PRESET)

# Within each S=256 net, error against the epoch of its first lr drop over the seed runs (no training).
first_drop_effect: installed ## within each net, error vs the epoch of its first lr drop over the seeds
	$(RUN) experiments/studies/first_drop_effect.py --preset $(PRESET)

# Nets A-E at S=256 continued to FACTOR (default 2) x the preset's epochs: does the depth ordering
# hold, and does the dense penalty at S-32, S, S+32 shrink?
schedule_study: installed ## nets A-E at S=256 trained FACTOR (default 2) x longer: depth order, dense gap
	$(RUN) experiments/studies/schedule_study.py --preset $(PRESET) $(if $(FACTOR),--factor $(FACTOR))

# The S=384 and jittered D and E nets continued to FACTOR x the preset's fine-tuning epochs: does
# the dense penalty above the training scale (and Table 5's dense vs multi-crop gap) shrink?
finetune_study: installed ## the S=384 and jittered D, E fine-tuned FACTOR x longer: the dense penalty
	$(RUN) experiments/studies/finetune_study.py --preset $(PRESET) $(if $(FACTOR),--factor $(FACTOR))

# The D line (S=256, 384, jitter) at crop 128 (PRESET) and crop 160 (the imagenette160 diagnostic):
# dense minus centre crop at every tested Q and Table 5, at both crops.
crop_study: installed ## net D's dense penalty at crop 128 and 160 (AGAINST=imagenette160)
	$(RUN) experiments/studies/crop_study.py --preset $(PRESET) $(if $(AGAINST),--against $(AGAINST))

# Does C beat D only through the dense penalty or the plateau rule's luck? From dense_geometry.csv,
# first_drop_effect.csv, seeds.csv and table3.csv (no training).
c_vs_d: installed ## D minus C with the dense penalty and the first-drop luck taken out (no training)
	$(RUN) experiments/studies/c_vs_d.py --preset $(PRESET)

# Why dense evaluation loses to crops above the training scale: boundary vs averaging terms.
dense_penalty: installed ## dense minus centre crop split into boundary and averaging terms (NETS=D_S256)
	$(RUN) experiments/studies/dense_penalty.py --preset $(PRESET) $(if $(NETS),--nets $(subst $(comma), ,$(NETS)))

# A-LRN0 (A-LRN with alpha = 0: LRN's fixed division only) against A and A-LRN, paired on the images.
lrn_control: installed ## is A-LRN's gain normalisation or a rescaling? A-LRN0 (alpha = 0) trained, paired
	$(RUN) experiments/studies/lrn_control.py --preset $(PRESET)

# The stream loader's rate per CPU core on ImageNet photographs at the paper's geometry; LOADER_DATA:
# an ImageFolder tree of full-size JPEGs (default: the 250 ILSVRC-2012 photographs beside the checkout).
loader_rate: installed ## JPEG decode + training input per CPU core at the paper's geometry (LOADER_DATA=)
	$(RUN) experiments/studies/loader_rate.py --data $(LOADER_DATA)

mixed_sizes_cost: installed ## what images of mixed sizes (Imagewoof's) cost the loader and evaluation beyond one size
	$(RUN) experiments/studies/mixed_sizes_cost.py --preset imagewoof

bench: installed ## benchmarks of the training step, loader and evaluation: results/bench.csv [NAME=bench_<machine>]
	$(RUN) experiments/studies/bench.py $(if $(NAME),--name $(NAME))

epoch_times: installed ## measured epoch time per config here, and the whole Table 3 chain's time
	$(RUN) experiments/studies/epoch_times.py --preset $(PRESET)

# Three real training epochs of each S=256 config at the imagewoof geometry on this machine (on Imagewoof when
# PRESET=imagewoof, else on Imagenette at the imagenette_fixed preset; about 10 min on 2 cores):
# results/<preset>/epoch_rates/LABEL/ (default: today's date); then one seed's evaluation passes timed on
# ImageNet photographs (eval_rates, about 5 min): together the rates reproduce_time reads
RATES_LABEL = $(or $(LABEL),$(shell date +%Y-%m-%d))
epoch_rates: installed ## real training epochs per config and one seed's evaluation passes: this CPU's rates [LABEL=]
	$(RUN) experiments/studies/epoch_rates.py --label $(RATES_LABEL) $(FIXED_SCHEDULE_RUN)
	$(MAKE) --no-print-directory eval_rates LABEL=$(RATES_LABEL)

# One seed's evaluation passes of the Imagewoof reproduction timed on LOADER_DATA's photographs: results/eval_rates/LABEL.csv
eval_rates: installed ## one seed's evaluation passes timed on photographs of mixed sizes [LABEL=]
	$(RUN) experiments/studies/eval_rates.py --preset imagewoof --images $(LOADER_DATA) --label $(RATES_LABEL)

# The Imagewoof reproduction's wall time from the epochs timed at its geometry (no training): results/reproduce_time.csv
reproduce_time: installed ## estimated hours of `make reproduce PRESET=imagewoof` from measured epoch times
	$(RUN) experiments/studies/reproduce_time.py

# A `make reproduce` run's wall_time.csv beside what each set of rates timed on its CPU predicts for
# the same steps (RUN_RESULTS=<its results/<preset> folder>, default results/$(PRESET)): written beside it
wall_time_check: installed ## a reproduce run's measured wall time per step against the estimate [RUN_RESULTS= RUN_DATA=]
	$(RUN) experiments/studies/wall_time_check.py --run $(or $(RUN_RESULTS),results/$(PRESET)) \
		$(if $(RUN_DATA),--run-data "$(RUN_DATA)")

eval_cost: installed ## cost per image of dense vs 150-crop multi-crop evaluation, net D
	$(RUN) experiments/studies/eval_cost.py --preset $(PRESET)

profile_step: installed ## where a training / evaluation step's time goes (torch.profiler, per conv layer)
	$(RUN) experiments/studies/profile_step.py --preset $(PRESET)

# The features as the chain runs them (vgg.fused: conv + ReLU and max-pool + ReLU fused, each ReLU before a
# max-pool applied after it) vs the same order as separate modules vs the plain order: bitwise equality and
# img/s of A/D/E's training step, D's dense and multi-crop evaluation, and (given the preset's data) whole
# training epochs of E, 3 per run, 2 runs per variant (about 12 min at imagenette): results/PRESET/fused_layers.csv
fused_layers: installed ## fused conv/pool + ReLU vs separate modules vs the plain order: same results, img/s
	$(RUN) experiments/studies/fused_layers.py --preset $(PRESET) \
		$(if $(filter imagenette,$(PRESET)),--data $(IMAGENETTE),$(if $(SMOKE),,--data $(VGG_DATA)))

# One prepared check of the paper preset on a GPU machine (scripts/gpu_check.py; needs no install there).
# Ship the repository with data/gpu_subset (git-ignored; the device tool's `carry`), then on the GPU
# machine `make gpu_check PYTHON=python3`.
gpu_subset: ## the real-image subset gpu_check reads (<= 40 MiB into data/gpu_subset; needs ../shared/data)
	$(PYTHON) scripts/gpu_check.py --make-subset data/gpu_subset

gpu_check: ## the paper preset's path and rates on one GPU, <= 8 min: results/gpu/*.csv
	$(PYTHON) scripts/gpu_check.py

gpu_estimates: installed ## each table's hours on 1 GPU and one 8-GPU node from results/gpu's rates: table_times.csv
	$(RUN) experiments/studies/gpu_estimates.py

##@ Housekeeping
clean: ## remove caches (runs/cache, __pycache__); checkpoints in runs/ stay
	rm -rf .pytest_cache runs/cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
