"""The programs shipped into the user data and run on the droplet as root: standard library only,
Python 3.9, shipped verbatim but for comments and docstrings; they never import the rest of the
package. hubaccounts and hubguards run with the hub's own Python and may import the hub's packages.
(tests/droplet/test_droplet_programs.py checks both rules.)
"""
