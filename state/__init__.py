"""elcrec.state"""
