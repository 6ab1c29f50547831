"""The paper's reported numbers (arXiv:2605.28888), for tables that put them beside ours.
Acc@1 is in percent in the paper; here every metric is a fraction in [0, 1]."""

#: Table 1: main results on the industrial dataset (Acc@1, NDCG@3).
TABLE1 = {
    "SASRec": {"acc1": 0.361, "ndcg3": 0.5865}, "BERT4Rec": {"acc1": 0.374, "ndcg3": 0.5973},
    "ReaRec": {"acc1": 0.429, "ndcg3": 0.6442}, "P5": {"acc1": 0.435, "ndcg3": 0.6581},
    "TIGER": {"acc1": 0.442, "ndcg3": 0.6647}, "GPlan-1.7B": {"acc1": 0.605, "ndcg3": 0.7450},
    "GPlan-4B": {"acc1": 0.627, "ndcg3": 0.7759},
}
#: Table 2: post-training strategies on GPlan-4B (label metrics and LLM-judge axes).
TABLE2 = {
    "Direct-SFT": {"acc1": 0.612, "ndcg3": 0.7591, "nes": 0.6210, "flow": 3.37, "logic": 3.43, "st": 3.49, "overall": 3.43},
    "CoT-SFT": {"acc1": 0.623, "ndcg3": 0.7785, "nes": 0.6354, "flow": 3.53, "logic": 3.61, "st": 3.64, "overall": 3.60},
    "PICD": {"acc1": 0.626, "ndcg3": 0.7726, "nes": 0.6290, "flow": 3.56, "logic": 3.62, "st": 3.69, "overall": 3.62},
    "PICD + SC-DPO": {"acc1": 0.627, "ndcg3": 0.7759, "nes": 0.6365, "flow": 3.58, "logic": 3.59, "st": 3.75, "overall": 3.64},
}
#: Table 3: PICD learning-rate schedules on GPlan-4B.
TABLE3 = {
    "Cosine-LR": {"acc1": 0.624, "ndcg3": 0.7652, "nes": 0.6259, "latent_valid": 0.0},
    "Constant-LR": {"acc1": 0.621, "ndcg3": 0.7575, "nes": 0.6216, "latent_valid": 1.0},
    "CALR": {"acc1": 0.626, "ndcg3": 0.7726, "nes": 0.6290, "latent_valid": 1.0},
}
#: Table 4: SC-DPO loss design on GPlan-4B.
TABLE4 = {
    "PICD": {"acc1": 0.626, "ndcg3": 0.7726, "nes": 0.6290, "st": 3.69, "overall": 3.62},
    "+ Vanilla DPO": {"acc1": 0.621, "ndcg3": 0.7484, "nes": 0.6158, "st": 3.60, "overall": 3.51},
    "+ SC-DPO": {"acc1": 0.627, "ndcg3": 0.7759, "nes": 0.6365, "st": 3.75, "overall": 3.64},
}
#: Table 5: mean response time (seconds) at QPS 10 on two H20 GPUs.
TABLE5 = {"1.7B": {"Direct-SFT": 0.299, "CoT-SFT": 1.06, "PICD": 0.366},
          "4B": {"Direct-SFT": 0.437, "CoT-SFT": 1.85, "PICD": 0.503}}
#: Sec. 3.2: share of synthesised candidates removed by the rule filter.
FILTER_REJECTION_RATE = 0.289
#: Our Table 5 runs and the paper's row each stands for (one backbone trained three ways).
TABLE5_ROWS = {"Direct-SFT": "Direct-SFT", "CoT-SFT": "CoT-SFT", "PICD (CALR)": "PICD"}

#: Sec. 5.1.3: PICD's settings in the paper's main runs (Qwen3-4B, 100K samples).
PICD_SETTINGS = {"backbone": "Qwen3-1.7B / 4B (pretrained)", "training samples": "99,000", "epochs": 13,
                 "latent tokens per block K": 3, "B* (p90 of B)": 9, "η_struct": 5e-6, "η_polish": 1e-6}
#: Sec. 5.1.3: SC-DPO's settings (from the PICD-CALR checkpoint).
SC_DPO_SETTINGS = {"epochs": 1, "learning rate": 2e-7, "warmup ratio": 0.03, "β_DPO": 0.20, "δ": 0.0, "λ_a": 5.0,
                   "[γ_l, γ_h]": "[0.1, 0.2]", "λ_g,l": 10.0, "λ_g,h": 2.0, "m": 0.0, "λ_c": 3.0}
