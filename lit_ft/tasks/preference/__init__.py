"""Preference tuning: pairs of a better and a worse answer (`PreferenceData`), DPO-family objectives (`dpo`) and
pairwise reward models (`reward_model`)."""
