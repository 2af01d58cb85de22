"""The paper's reference numbers (copied from the paper; checked against ../shared/paper)."""
