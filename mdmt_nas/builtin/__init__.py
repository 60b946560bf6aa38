"""Built-in plugins: each module registers its components through the ordinary hooks, like a third party.

Where each built-in lives (kind name -> file):

    basic.py       experts mlp, identity; gates softmax, uniform; fusions sum, gated, mean, own;
                   adapter bottleneck; tower mlp_tower; balancer equal
    baselines.py   expert star (STAR's domain-aware bottom)
    m3oe.py        expert m3oe_star; fusions balance (level 1), weighted (level 2)
    cesaa.py       gate noisy_topk (CESAA's noisy top-k with the mutual-information loss)
    dephn.py       experts cross, fint; gate dephn; adapter soft_selection (fields)
    interactions.py expert product (pairwise products of the field embeddings)
    hamur.py       adapter hamur (HAMUR's hyper-network adapter)
    pmtrec.py      balancer pmtrec
    balancers.py   balancers uncertainty, gradnorm, pcgrad
    datasets.py    datasets synthetic, csv, parquet, ml-100k, ml-100k-original, ml-1m, kuairand, aliccp, aliexpress
    spaces.py      the search spaces in search_spaces/*.yaml
    searchers.py   searchers darts, optuna-*, nni-*; the DARTS mixed ops darts.mixed_*
"""
