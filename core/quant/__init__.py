"""Quantization: tensor ranges and types, the INT8 rules of each op family (rules/), lowering a
graph to a plan for a chip, simulating the plan as the chip computes it, deploying it."""
