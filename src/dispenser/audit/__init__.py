"""The auditor's evidence: guarantee checks that run on an installed package.

`dispenser audit` runs every check registered in `dispenser.audit.registry` (store
deletion guarantees, process-wide hardening, configuration ceilings, model inventory) and
writes a report (Markdown, JSON, HTML) that states each guarantee in plain language, how it
was tested, and the result. No repository checkout is needed: the checks exercise the same
code the device runs, with a virtual clock.
"""
