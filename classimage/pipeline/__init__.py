"""The pipeline, run on the instructor's machine: a course spec in (spec, checks), one typed model,
the plan of steps, and the artifacts out (user data, Packer, workflows, links, Helm values), pure
and deterministic. It never talks to the cloud and never imports classimage.cloud.
"""
