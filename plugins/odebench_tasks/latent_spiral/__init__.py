"""The latent-ODE task on irregularly sampled 2-D spirals (Chen et al. 2018, Table 2)."""
