"""Evaluation of a trained expression GAN (`fex eval`); the entry point is `run.evaluate_run`.

One module per concern: `judge` (independent ResNet expression classifier), `discriminator_table`
(FExGAN Table 1), `identity` (dlib descriptors), `frechet` + `inception` (Fréchet distances),
`generate` (running the generator deterministically), `figures` + `paper_figures` (PNG grids),
`report` + `report_sections` (report.html and the terminal summary), `scores` (accuracies).
"""
