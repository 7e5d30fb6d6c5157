# DSR quick start: adenylate kinase opening (98-frame DIMS trajectory shipped by MDAnalysisTests),
# a fast DSR model (K-Planes) trained on the CPU (a few minutes), its surfaces at t = 0, 0.5 (coloured like the
# atoms nearest to it) and 1 (coloured by normal speed) next to the cartoon, a ray-traced picture and the model
# file in demo_out/.
#
#   pip install torch==2.13.0 -e ".[demo,pymol]"
#   pymol -c examples/quickstart.pml          (or File > Run Script... in PyMOL)

python
import os
import pymol_dsr
from MDAnalysisTests.datafiles import DCD, PSF
os.makedirs("demo_out", exist_ok=True)
cmd.load(PSF, "adk")
cmd.load_traj(DCD, "adk")
python end

# every 8th of the first 81 states (1, 9, ..., 81), two thirds of the default schedule (steps=1000), async=0 also makes the GUI wait
dsr_train adk, states=1-81:8, preset=fast, steps=1000, async=0
dsr_save adk_dsr, demo_out/adk_dsr.pt

hide everything, adk
dss adk
show cartoon, adk
spectrum resi, rainbow, adk

dsr_surface t=0, name=adk_t0
dsr_surface t=0.5, name=adk_t0.5, color=atoms
dsr_surface t=1, name=adk_t1, color=speed
# every state as one playable object, with the atoms in step: dsr_surface state=1-98, name=movie, atoms=1

bg_color white
set ray_opaque_background, 1
set grid_mode, 1
orient adk
zoom adk_t1, 8
set ray_shadows, 0
png demo_out/quickstart.png, width=1600, height=450, dpi=150, ray=1
