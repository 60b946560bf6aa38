"""Every seed component passes the component contract kit (mdmt_nas.testing)."""

from __future__ import annotations

from mdmt_nas.builtin.balancers import GradNorm, PCGrad, UncertaintyWeighting
from mdmt_nas.builtin.cesaa import NoisyTopKGate
from mdmt_nas.builtin.dephn import CrossExpert, DephnGate, FintExpert, SoftSelection
from mdmt_nas.builtin.hamur import HyperAdapter
from mdmt_nas.builtin.pmtrec import PMTRec
from mdmt_nas.testing import contract_test

test_noisy_topk = contract_test(NoisyTopKGate)
test_hamur = contract_test(HyperAdapter)
test_cross = contract_test(CrossExpert)
test_fint = contract_test(FintExpert)
test_soft_selection = contract_test(SoftSelection)
test_dephn_gate = contract_test(DephnGate)
test_pmtrec = contract_test(PMTRec)
test_uncertainty = contract_test(UncertaintyWeighting)
test_gradnorm = contract_test(GradNorm)
test_pcgrad = contract_test(PCGrad)
